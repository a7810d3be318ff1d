package auth

import (
	"context"
	"fmt"

	"github.com/comfy-workshop/workshop/store"
)

// Secret names a token kept (hashed) in the store.
type Secret string

const (
	AdminToken Secret = "admin_token_sha256"
	AgentToken Secret = "agent_token_sha256"
)

// EnsureToken makes the store hold the hash of the named token and returns
// that hash. A token given by the operator replaces the stored one; with none
// given and none stored, a new one is generated and returned in fresh (to be
// shown once: only its hash is kept). With none given and one stored, fresh
// is empty.
func EnsureToken(ctx context.Context, db *store.DB, name Secret, given string) (hash, fresh string, err error) {
	if given != "" {
		if len(given) < 16 {
			return "", "", fmt.Errorf("%s: a token must be at least 16 characters", name)
		}
		hash = HashToken(given)
		return hash, "", db.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(string(name), hash) })
	}
	err = db.View(func(tx *store.Tx) error {
		_, err := tx.Setting(string(name), &hash)
		return err
	})
	if err != nil || hash != "" {
		return hash, "", err
	}
	fresh = NewToken()
	hash = HashToken(fresh)
	return hash, fresh, db.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(string(name), hash) })
}

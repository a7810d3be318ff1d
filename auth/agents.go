package auth

import (
	"context"
	"crypto/subtle"
	"slices"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// settingAgentTokens holds the per-host agent tokens: name -> agentToken.
const settingAgentTokens = "agent_tokens"

// HostToken is one GPU host's own token, as listed (never the token).
type HostToken struct {
	Name      string    `json:"name"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

type agentToken struct {
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

// AgentTokens are the per-host tokens of GPU agents, stored hashed: each
// is bound to one agent name, so a host holding one can connect as itself
// only, and revoking it cuts that host alone.
type AgentTokens struct {
	db *store.DB
}

// NewAgentTokens returns the tokens kept in db.
func NewAgentTokens(db *store.DB) *AgentTokens { return &AgentTokens{db: db} }

func (a *AgentTokens) read(tx *store.Tx) (map[string]agentToken, error) {
	m := map[string]agentToken{}
	_, err := tx.Setting(settingAgentTokens, &m)
	return m, err
}

func (a *AgentTokens) all() (map[string]agentToken, error) {
	var m map[string]agentToken
	err := a.db.View(func(tx *store.Tx) (err error) {
		m, err = a.read(tx)
		return err
	})
	return m, err
}

// Add makes a token for the agent name and returns it, to be shown once.
// A name that has one already is a conflict: revoke it first.
func (a *AgentTokens) Add(ctx context.Context, name string) (string, HostToken, error) {
	token := NewToken()
	rec := HostToken{Name: name, Hash: HashToken(token), CreatedAt: time.Now().UTC()}
	err := a.db.Write(ctx, func(tx *store.Tx) error {
		m, err := a.read(tx)
		if err != nil {
			return err
		}
		if _, ok := m[name]; ok {
			return workshop.Errorf(workshop.ECONFLICT, "agent %q has a token already: revoke it first to make a new one", name)
		}
		m[name] = agentToken{Hash: rec.Hash, CreatedAt: rec.CreatedAt}
		return tx.PutSetting(settingAgentTokens, m)
	})
	if err != nil {
		return "", HostToken{}, err
	}
	return token, rec, nil
}

// List returns the tokens by name.
func (a *AgentTokens) List() ([]HostToken, error) {
	m, err := a.all()
	if err != nil {
		return nil, err
	}
	out := make([]HostToken, 0, len(m))
	for name, t := range m {
		out = append(out, HostToken{Name: name, Hash: t.Hash, CreatedAt: t.CreatedAt})
	}
	slices.SortFunc(out, func(x, y HostToken) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// Revoke deletes the token of name and returns it (with its hash, to close
// its sessions).
func (a *AgentTokens) Revoke(ctx context.Context, name string) (HostToken, error) {
	var rec HostToken
	err := a.db.Write(ctx, func(tx *store.Tx) error {
		m, err := a.read(tx)
		if err != nil {
			return err
		}
		t, ok := m[name]
		if !ok {
			return workshop.Errorf(workshop.ENOTFOUND, "agent %q has no token of its own", name)
		}
		rec = HostToken{Name: name, Hash: t.Hash, CreatedAt: t.CreatedAt}
		delete(m, name)
		return tx.PutSetting(settingAgentTokens, m)
	})
	return rec, err
}

// Identify returns the agent token that token is, comparing every stored
// hash in constant time.
func (a *AgentTokens) Identify(token string) (HostToken, bool) {
	if token == "" {
		return HostToken{}, false
	}
	m, err := a.all()
	if err != nil {
		return HostToken{}, false
	}
	got := []byte(HashToken(token))
	var found HostToken
	ok := false
	for name, t := range m {
		if subtle.ConstantTimeCompare(got, []byte(t.Hash)) == 1 {
			found, ok = HostToken{Name: name, Hash: t.Hash, CreatedAt: t.CreatedAt}, true
		}
	}
	return found, ok
}

// Has reports whether name has a token of its own.
func (a *AgentTokens) Has(name string) bool {
	m, err := a.all()
	_, ok := m[name]
	return err == nil && ok
}

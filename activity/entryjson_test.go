package activity

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// plainEntry is Entry without its methods: what encoding/json makes of it.
type plainEntry Entry

func TestEntryJSONMatchesReflection(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 9))
	texts := []string{"", "admin", "user007", `a"b\c`, "<b>&", "Zoë", "\u2028", "\x01", "bad\xff"}
	pick := func() string { return texts[rnd.IntN(len(texts))] }
	for i := range 2000 {
		e := Entry{ID: pick(), Time: time.Unix(rnd.Int64N(4e9), rnd.Int64N(1e9)).In(time.FixedZone("X", rnd.IntN(20)*1800)), Actor: pick(), Kind: pick(), Action: pick(),
			Detail: pick(), JobID: pick(), UserID: pick(), JobNumber: uint64(rnd.IntN(3)) * rnd.Uint64(), Worker: pick()}
		want, _ := json.Marshal(plainEntry(e))
		got, err := e.AppendJSON(nil)
		if err != nil || string(got) != string(want) {
			t.Fatalf("entry %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
	}
}

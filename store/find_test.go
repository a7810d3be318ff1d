package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// Numbers are found by bisection over ids that carry their millisecond:
// many jobs in one millisecond, long gaps, pruned numbers and numbers never
// given.
func TestJobByNumberAndEachJobAfter(t *testing.T) {
	db := open(t, t.TempDir())
	ms := uint64(0x01a2_3bbc_3dfb)
	var ids []string
	n := uint64(0)
	err := db.Write(context.Background(), func(tx *store.Tx) error {
		for i := 0; i < 600; i++ {
			switch {
			case i%50 == 0:
				ms += 86_400_000 // a day later
			case i%7 == 0:
				ms++
			}
			n++
			id := fmt.Sprintf("%08x-%04x-7%03x-8000-%012x", ms>>16, ms&0xffff, i, i)
			ids = append(ids, id)
			j := &workshop.Job{ID: id, Seq: n, UserID: "user001", Status: workshop.StatusCompleted, CreatedAt: time.UnixMilli(int64(ms))}
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return tx.DeleteJob(ids[99]) // number 100 was pruned
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *store.Tx) error {
		for num := uint64(1); num <= 600; num++ {
			j, err := tx.JobByNumber(num)
			if num == 100 {
				if workshop.ErrorCode(err) != workshop.ENOTFOUND {
					t.Errorf("pruned #100: %v %v", j, err)
				}
				continue
			}
			if err != nil || j.Seq != num || j.ID != ids[num-1] {
				t.Fatalf("#%d: %v %v", num, j, err)
			}
		}
		for _, num := range []uint64{0, 601, 1 << 40} {
			if _, err := tx.JobByNumber(num); workshop.ErrorCode(err) != workshop.ENOTFOUND {
				t.Errorf("#%d: %v", num, err)
			}
		}
		var got []uint64
		tx.EachJobAfter(ids[595], func(j *workshop.Job) bool { got = append(got, j.Seq); return true })
		if fmt.Sprint(got) != "[597 598 599 600]" {
			t.Errorf("after #596: %v", got)
		}
		got = nil
		tx.EachJobAfter("", func(j *workshop.Job) bool { got = append(got, j.Seq); return len(got) < 2 })
		if fmt.Sprint(got) != "[1 2]" {
			t.Errorf("from the start: %v", got)
		}
		return nil
	})
	empty := open(t, t.TempDir())
	empty.View(func(tx *store.Tx) error {
		if _, err := tx.JobByNumber(1); workshop.ErrorCode(err) != workshop.ENOTFOUND {
			t.Errorf("empty store: %v", err)
		}
		return nil
	})
}

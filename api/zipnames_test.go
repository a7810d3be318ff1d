package api

import (
	"testing"

	workshop "github.com/comfy-workshop/workshop"
)

func TestZipNamesDeduplicate(t *testing.T) {
	z := zipNames{seats: map[string]string{"user003": "Ann"}, taken: map[string]bool{}}
	j := &workshop.Job{ID: "0190aaaa-0000-7000-8000-000000000001", Seq: 12, UserID: "user003"}
	legacy := &workshop.Job{ID: "0190aaaa-0000-7000-8000-000000000002", UserID: "api-client/x"}
	got := []string{z.of(j, "a.png"), z.of(j, "a.png"), z.of(j, "a.png"), z.of(legacy, "a.png")}
	want := []string{"seat-003 Ann/job-0012_a.png", "seat-003 Ann/job-0012_a-2.png", "seat-003 Ann/job-0012_a-3.png",
		"api-client_x/0190aaaa-0000-7000-8000-000000000002_a.png"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %q, want %q", i, got[i], want[i])
		}
	}
}

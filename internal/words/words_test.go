package words

import "testing"

func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0 finished jobs"}, {1, "1 finished job"}, {2, "2 finished jobs"}, {1000, "1000 finished jobs"}} {
		if got := Plural(c.n, "finished job"); got != c.want {
			t.Errorf("Plural(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

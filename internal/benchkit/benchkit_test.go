package benchkit

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	tb := &Table{title: "Title", head: []string{"clients", "rate/s", "p99 ms"}, rows: map[string][]string{}}
	tb.Set(1, 419.4, 26.04)
	tb.Set(64, 5860.0, 0.0512)
	tb.Set(1, 420.0, 25.0) // the framework's second run of a row replaces the first
	tb.Row("x", "all", 12.345)
	want := `
Title

| clients | rate/s | p99 ms |
| ------- | ------ | ------ |
| 1       | 420    | 25.0   |
| 64      | 5860   | 0.051  |
| all     | 12.3   |        |

`
	if got := tb.markdown(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestPct(t *testing.T) {
	if Pct(nil, 0.5) != 0 {
		t.Fatal("empty")
	}
	d := []time.Duration{5, 1, 4, 2, 3}
	if Pct(d, 0) != 1 || Pct(d, 0.5) != 3 || Pct(d, 0.99) != 4 || Pct(d, 1) != 5 {
		t.Fatalf("quantiles of %v", d)
	}
	var l Latencies
	for i := range 100 {
		l.Add(time.Duration(100 - i))
	}
	if l.Pct(0.5) != 50 {
		t.Fatalf("latencies p50 %v", l.Pct(0.5))
	}
}

func TestEnvInts(t *testing.T) {
	t.Setenv("BENCHKIT_TEST", "")
	if got := EnvInts(t, "BENCHKIT_TEST", 1, 2); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("default: %v", got)
	}
	t.Setenv("BENCHKIT_TEST", "0, 100000,1000000")
	if got := EnvInts(t, "BENCHKIT_TEST", 1); !slices.Equal(got, []int{0, 100000, 1000000}) {
		t.Fatalf("list: %v", got)
	}
	if got := EnvInt(t, "BENCHKIT_TEST", 1); got != 0 {
		t.Fatalf("first: %v", got)
	}
}

func TestBackground(t *testing.T) {
	stopped := make(chan struct{})
	t.Run("sub", func(t *testing.T) {
		Background(t, func(ctx context.Context) {
			<-ctx.Done()
			close(stopped)
		})
	})
	select {
	case <-stopped:
	default:
		t.Fatal("the work was not stopped and waited for when its test ended")
	}
}

package benchkit

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Table is a benchmark's summary, printed as a Markdown table when the
// benchmark ends (the lines `go test -bench` prints carry the same figures,
// one metric after another, harder to read).
type Table struct {
	title string
	head  []string

	mu   sync.Mutex
	keys []string
	rows map[string][]string
}

// NewTable returns a table with a title and column heads, printed to
// standard output when tb ends.
func NewTable(tb testing.TB, title string, head ...string) *Table {
	t := &Table{title: title, head: head, rows: map[string][]string{}}
	tb.Cleanup(t.print)
	return t
}

// Set fills the row whose first cell is cells[0]; rows keep the order of
// their first Set. The benchmark framework runs a sub-benchmark first with
// b.N = 1, then with the b.N asked for: the last run's row stays. Numbers
// get three significant places or so (0.123, 1.23, 12.3, 123, 1234).
func (t *Table) Set(cells ...any) { t.Row(fmt.Sprint(cells[0]), cells...) }

// Row is Set for a row known by key rather than by its first cell.
func (t *Table) Row(key string, cells ...any) {
	row := make([]string, len(t.head))
	for i, c := range cells[:min(len(cells), len(row))] {
		switch v := c.(type) {
		case float64:
			row[i] = Num(v)
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.rows[key]; !ok {
		t.keys = append(t.keys, key)
	}
	t.rows[key] = row
}

// Num formats a figure for a table.
func Num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func (t *Table) print() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rows) == 0 {
		return
	}
	fmt.Print(t.markdown())
}

func (t *Table) markdown() string {
	width := make([]int, len(t.head))
	for i, h := range t.head {
		width[i] = len(h)
		for _, r := range t.rows {
			width[i] = max(width[i], len(r[i]))
		}
	}
	var sb strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			fmt.Fprintf(&sb, "| %-*s ", width[i], c)
		}
		sb.WriteString("|\n")
	}
	fmt.Fprintf(&sb, "\n%s\n\n", t.title)
	line(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, k := range t.keys {
		line(t.rows[k])
	}
	sb.WriteString("\n")
	return sb.String()
}

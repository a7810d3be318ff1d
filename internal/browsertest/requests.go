package browsertest

import (
	"fmt"
	"strings"
	"sync"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Request is one request the page made and how it ended.
type Request struct {
	Method string
	URL    string
	Status int    // 0 when no answer came
	Error  string // the network error, when no answer came
}

func (r Request) String() string {
	if r.Status == 0 {
		return fmt.Sprintf("%s %s: %s", r.Method, r.URL, r.Error)
	}
	return fmt.Sprintf("%s %s: %d", r.Method, r.URL, r.Status)
}

// Requests records every request of a tab: pass Listener() to [Start].
// Requests the page itself gave up (a video's range request, a navigation
// away) are not failures and are left out.
type Requests struct {
	mu   sync.Mutex
	sent map[network.RequestID]Request // method and URL, from the request
	done []Request
}

// NewRequests returns an empty record.
func NewRequests() *Requests { return &Requests{sent: map[network.RequestID]Request{}} }

// Listener is the context option that feeds the record.
func (r *Requests) Listener() chromedp.ContextOption {
	return chromedp.WithListener(func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if !strings.HasPrefix(ev.Request.URL, "http") {
				return // data: and blob: URLs reach no server
			}
			r.sent[ev.RequestID] = Request{Method: ev.Request.Method, URL: ev.Request.URL}
		case *network.EventResponseReceived:
			q, ok := r.sent[ev.RequestID]
			if !ok {
				return
			}
			q.URL, q.Status = ev.Response.URL, int(ev.Response.Status)
			r.done = append(r.done, q)
		case *network.EventLoadingFailed:
			if ev.Canceled {
				return
			}
			q, ok := r.sent[ev.RequestID]
			if !ok {
				return
			}
			q.Error = strings.TrimSpace(ev.ErrorText + " " + string(ev.BlockedReason))
			r.done = append(r.done, q)
		}
	})
}

// All returns what was recorded so far, in order.
func (r *Requests) All() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.done...)
}

// Failed returns the requests answered with a status of 400 or more, or
// not answered at all.
func (r *Requests) Failed() []Request {
	var out []Request
	for _, q := range r.All() {
		if q.Status == 0 || q.Status >= 400 {
			out = append(out, q)
		}
	}
	return out
}

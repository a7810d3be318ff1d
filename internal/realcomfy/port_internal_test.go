package realcomfy

import (
	"net/http"
	"testing"
)

// A port is free when it is picked, and a test running in parallel can
// bind it before ComfyUI does: the instance then moves to another port
// rather than take the other process for itself.
func TestPortTakenByAnotherProcess(t *testing.T) {
	v := Versions(t)[0]
	first := Start(t, v, Options{})
	second, err := newInstance(t, v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	second.Port, second.URL = first.Port, first.URL
	if err := second.startFresh(); err != nil {
		t.Fatal(err)
	}
	if second.Port == first.Port || !second.answersAsItself(http.DefaultClient) || !first.answersAsItself(http.DefaultClient) {
		t.Errorf("ports %d and %d", first.Port, second.Port)
	}
}

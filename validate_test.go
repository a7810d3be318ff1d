package workshop

import "testing"

func TestSafeText(t *testing.T) {
	for s, want := range map[string]bool{
		"Alice": true, "Zoë 猫": true, "a.png": true, "": true,
		"a\r\nb": false, "a\x00": false, "tab\t": false, "\x7f": false, "\u0085": false,
		"gpj\u202e.exe": false, "\u2066x\u2069": false, "\u200f": false, "\u061c": false, "bad\xffutf8": false,
	} {
		if got := SafeText(s); got != want {
			t.Errorf("%q: %v", s, got)
		}
	}
}

func TestStoredNameMakesUnsafeNamesSafe(t *testing.T) {
	if got := StoredName("a\r\nb_00001_.png", "", "output"); got != "a__b_00001_.png" {
		t.Errorf("got %q", got)
	}
	if got := StoredName("x\u202egnp.png", "sub", "output"); got != "sub_x_gnp.png" {
		t.Errorf("got %q", got)
	}
}

func TestWorkflowClasses(t *testing.T) {
	got, err := WorkflowClasses([]byte(`{"3":{"class_type":"SaveImage","inputs":{"images":["1",0]}},"1":{"class_type":"EmptyImage"},"2":{"class_type":"SaveImage"}}`))
	if err != nil || len(got) != 2 || got[0] != "EmptyImage" || got[1] != "SaveImage" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := WorkflowClasses([]byte(`{"1":{"inputs":{}}}`)); ErrorCode(err) != EINVALID {
		t.Errorf("a node without class_type: %v", err)
	}
}

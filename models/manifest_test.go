package models

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sumA = "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"

func TestParseManifest(t *testing.T) {
	list := `
- folder: checkpoints
  file: sd_xl_base_1.0.safetensors
  url: https://huggingface.co/stabilityai/sdxl/resolve/main/sd_xl_base_1.0.safetensors
  sha256: ` + strings.ToUpper(sumA) + `
  size: 6938078334
- folder: loras/styles/
  file: "pixel art.safetensors"
  url: http://files.lan:8080/pixel.safetensors?x=1
`
	for name, doc := range map[string]string{"list": list, "models key": "models:" + strings.ReplaceAll(list, "\n", "\n  ")} {
		entries, err := ParseManifest([]byte(doc), "m.yaml")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(entries) != 2 {
			t.Fatalf("%s: %+v", name, entries)
		}
		a, b := entries[0], entries[1]
		if a.Folder != "checkpoints" || a.File != "sd_xl_base_1.0.safetensors" || a.SHA256 != sumA || a.Size != 6938078334 ||
			a.Path() != "checkpoints/sd_xl_base_1.0.safetensors" {
			t.Errorf("%s: first %+v", name, a)
		}
		if b.Folder != "loras/styles" || b.File != "pixel art.safetensors" || b.SHA256 != "" || b.Size != 0 ||
			b.URL != "http://files.lan:8080/pixel.safetensors?x=1" || b.Line == 0 {
			t.Errorf("%s: second %+v", name, b)
		}
	}
	if entries, err := ParseManifest([]byte("models:\n"), "m"); err != nil || len(entries) != 0 {
		t.Errorf("empty models: %v %v", entries, err)
	}
	if entries, err := ParseManifest([]byte("[]"), "m"); err != nil || len(entries) != 0 {
		t.Errorf("empty list: %v %v", entries, err)
	}

	file := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(file, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	if entries, err := LoadManifest(file); err != nil || len(entries) != 2 {
		t.Errorf("LoadManifest: %v %v", entries, err)
	}
	if _, err := LoadManifest(file + ".nope"); err == nil || !strings.Contains(err.Error(), "models manifest") {
		t.Errorf("missing file: %v", err)
	}
	if got := UnknownFolders([]Entry{{Folder: "checkpoints"}, {Folder: "checkpoint"}, {Folder: "ipadapter/x"}, {Folder: "checkpoint"}, {Folder: "loras/a"}}); strings.Join(got, ",") != "checkpoint,ipadapter" {
		t.Errorf("UnknownFolders: %v", got)
	}
}

func TestParseManifestErrors(t *testing.T) {
	entry := func(kv string) string {
		return "- folder: checkpoints\n  file: a.safetensors\n  url: https://h/a\n" + indent(kv)
	}
	cases := []struct{ name, doc, want string }{
		{"empty", "", "empty manifest"},
		{"not yaml", "- folder: [", "m.yaml"},
		{"scalar", "hello", "want a list"},
		{"other key", "models: []\nversion: 2\n", `unexpected key "version"`},
		{"no models key", "{}", `no "models" list`},
		{"entry not mapping", "- checkpoints/a.safetensors\n", "want a mapping"},
		{"unknown key", entry("sha265: " + sumA + "\n"), `unknown key "sha265"`},
		{"repeated key", entry("url: https://h/b\n"), `key "url" given twice`},
		{"missing url", "- folder: checkpoints\n  file: a.safetensors\n", "url is missing"},
		{"missing folder", "- file: a.safetensors\n  url: https://h/a\n", "folder is missing"},
		{"null value", entry("sha256:\n"), "sha256: want a value"},
		{"list value", entry("size: [1]\n"), "size: want a value"},
		{"dotdot folder", "- folder: ../etc\n  file: a\n  url: https://h/a\n", "would leave the models folder"},
		{"inner dotdot", "- folder: loras/../../x\n  file: a\n  url: https://h/a\n", "would leave"},
		{"absolute folder", "- folder: /etc\n  file: a\n  url: https://h/a\n", "relative to the models directory"},
		{"backslash folder", `- {folder: 'a\b', file: a, url: "https://h/a"}` + "\n", "no '/', '\\' or ':'"},
		{"empty part", "- folder: loras//x\n  file: a\n  url: https://h/a\n", "empty name"},
		{"hidden folder", "- folder: .git\n  file: a\n  url: https://h/a\n", "hidden"},
		{"file with slash", "- folder: checkpoints\n  file: sub/a.safetensors\n  url: https://h/a\n", "want a plain file name"},
		{"file dotdot", "- folder: checkpoints\n  file: ..\n  url: https://h/a\n", "would leave"},
		{"file part", "- folder: checkpoints\n  file: a.part\n  url: https://h/a\n", "partial files"},
		{"hidden file", "- folder: checkpoints\n  file: .workshop-models.json\n  url: https://h/a\n", "hidden"},
		{"control char", "- folder: checkpoints\n  file: \"a\\tb\"\n  url: https://h/a\n", "control"},
		{"ftp url", "- folder: checkpoints\n  file: a\n  url: ftp://h/a\n", "want an http:// or https:// URL"},
		{"file url", "- folder: checkpoints\n  file: a\n  url: file:///etc/passwd\n", "want an http:// or https:// URL"},
		{"no host", "- folder: checkpoints\n  file: a\n  url: https:///a\n", "no host"},
		{"short hash", entry("sha256: abc\n"), "want 64 hex digits"},
		{"non-hex hash", entry("sha256: " + strings.Repeat("z", 64) + "\n"), "want 64 hex digits"},
		{"zero size", entry("size: 0\n"), "positive number of bytes"},
		{"text size", entry("size: 6GB\n"), "positive number of bytes"},
		{"duplicate", entry("") + entry(""), "checkpoints/a.safetensors is already listed on line 1"},
		{"duplicate case", entry("") + "- folder: checkpoints\n  file: A.safetensors\n  url: https://h/a\n", "already listed"},
	}
	for _, c := range cases {
		_, err := ParseManifest([]byte(c.doc), "m.yaml")
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "m.yaml") {
			t.Errorf("%s: %q does not say %q", c.name, err, c.want)
		}
	}

	// Every problem is reported at once, each with its line.
	doc := "- folder: checkpoints\n  file: a\n  url: ftp://h/a\n- folder: ../x\n  file: b\n  url: https://h/b\n  colour: red\n"
	_, err := ParseManifest([]byte(doc), "m.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"m.yaml:1: model 1", "ftp://", "m.yaml:4: model 2", `unknown key "colour" (line 7`, "../x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + s
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/a?token=secret&x=1":                     "https://h/a?token=xxxxx&x=1",
		"https://u:pw@h/a":                                 "https://u:xxxxx@h/a",
		"https://h/a?X-Amz-Signature=abc&X-Amz-Date=1":     "https://h/a?X-Amz-Date=1&X-Amz-Signature=xxxxx",
		"https://civitai.com/api/download/models/1?type=x": "https://civitai.com/api/download/models/1?type=x",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

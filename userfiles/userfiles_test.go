package userfiles

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Expected shapes below are read from ComfyUI's app/user_manager.py and
// app/app_settings.py (single-user mode).

func TestUsersSingleUser(t *testing.T) {
	e := newEnv(t, nil)
	for _, base := range []string{"/user/1", "/user/1/api"} {
		// get_users without --multi-user: no "users" key (no user picker),
		// migrated = whether the user folder exists.
		want(t, "GET users", e.get(base+"/users"), 200, `{"storage":"server","migrated":false}`)
	}
	want(t, "GET settings", e.get("/user/1/api/settings"), 200, `{}`)
	want(t, "GET users after", e.get("/user/1/api/users"), 200, `{"storage":"server","migrated":true}`)
	want(t, "other seat", e.get("/user/2/api/users"), 200, `{"storage":"server","migrated":false}`)

	// post_users: duplicate of the single "default" user, empty, system prefix.
	want(t, "dup", e.post("/user/1/api/users", []byte(`{"username":"default"}`)), 400, `{"error":"Duplicate username."}`)
	want(t, "empty", e.post("/user/1/api/users", []byte(`{"username":"   "}`)), 400, `{"error":"username not provided"}`)
	want(t, "system", e.post("/user/1/api/users", []byte(`{"username":"__sys"}`)), 400, `{"error":"System User prefix not allowed"}`)
	a := e.post("/user/1/users", []byte(`{"username":"Ann B!"}`))
	want(t, "new", a, 200)
	var id string
	a.json(t, &id)
	if !regexp.MustCompile(`^Ann-B-_[0-9a-f-]{36}$`).MatchString(id) {
		t.Fatalf("user id %q", id)
	}
	// Nothing is stored: no users.json anywhere.
	_ = filepath.Walk(e.dir, func(p string, _ os.FileInfo, _ error) error {
		if filepath.Base(p) == "users.json" {
			t.Fatalf("users.json written at %s", p)
		}
		return nil
	})
}

func TestSettings(t *testing.T) {
	e := newEnv(t, nil)
	const s = "/user/1/api/settings"
	want(t, "empty", e.get(s), 200, `{}`)
	// post_settings answers 200 with no body and merges {**old, **new}.
	want(t, "post", e.post(s, []byte(`{"Comfy.A": 1, "Comfy.B": {"x": [1, 2]}}`)), 200, "")
	want(t, "get", e.get(s), 200, `{"Comfy.A":1,"Comfy.B":{"x":[1,2]}}`)
	want(t, "merge", e.post("/user/1/settings", []byte(`{"Comfy.B": 2, "Comfy.C": "c"}`)), 200, "")
	want(t, "merged", e.get(s), 200, `{"Comfy.A":1,"Comfy.B":2,"Comfy.C":"c"}`)
	// get_setting: the value or null.
	want(t, "one", e.get(s+"/Comfy.B"), 200, `2`)
	want(t, "escaped id", e.get(s+"/Comfy%2EC"), 200, `"c"`)
	want(t, "unset", e.get(s+"/Nope"), 200, `null`)
	// post_setting stores any JSON value.
	want(t, "post one", e.post(s+"/Comfy.D", []byte(`[true, null]`)), 200, "")
	want(t, "after one", e.get(s), 200, `{"Comfy.A":1,"Comfy.B":2,"Comfy.C":"c","Comfy.D":[true,null]}`)
	// The file is ComfyUI's comfy.settings.json with indent=4, and is
	// also an ordinary userdata file.
	raw, ok := e.read(1, "comfy.settings.json")
	if !ok || !strings.Contains(raw, "\n    \"Comfy.A\": 1,") {
		t.Fatalf("settings file %q", raw)
	}
	want(t, "as userdata", e.get("/user/1/api/userdata/comfy.settings.json"), 200, raw)
	// Bad bodies change nothing.
	want(t, "bad json", e.post(s, []byte(`{"a":`)), 400)
	want(t, "array", e.post(s, []byte(`[1]`)), 400)
	want(t, "bad value", e.post(s+"/X", []byte(`nope`)), 400)
	want(t, "unchanged", e.get(s), 200, `{"Comfy.A":1,"Comfy.B":2,"Comfy.C":"c","Comfy.D":[true,null]}`)
	// Another participant has their own settings.
	want(t, "seat 2", e.get("/user/2/api/settings"), 200, `{}`)
	// A corrupt file reads as {} (ComfyUI logs it and answers {}).
	e.put(1, "comfy.settings.json", "{broken")
	want(t, "corrupt", e.get(s), 200, `{}`)
	want(t, "corrupt one", e.get(s+"/Comfy.A"), 200, `null`)
	want(t, "repair", e.post(s+"/Comfy.A", []byte(`5`)), 200)
	want(t, "repaired", e.get(s), 200, `{"Comfy.A":5}`)
}

// setupTree puts a small tree into participant 1's folder.
func setupTree(e *env) {
	e.put(1, "workflows/a.json", "aaaa")
	e.put(1, "workflows/Zed.json", "z")
	e.put(1, "workflows/sub/b.json", "bb")
	e.put(1, "workflows/.hidden.json", "h")
	e.put(1, "workflows/.hid/c.json", "c")
	e.put(1, "my dir/file.txt", "x")
}

func TestListShapes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WorkflowDirs = nil })
	setupTree(e)
	const l = "/user/1/api/userdata"
	want(t, "no dir", e.get(l), 400, "Directory not provided")
	want(t, "empty dir", e.get(l+"?dir="), 400, "Directory not provided")
	want(t, "missing", e.get(l+"?dir=nothere"), 404, "Directory not found")
	want(t, "escape", e.get(l+"?dir=..%2Fuser002"), 403, "Invalid directory")
	want(t, "absolute", e.get(l+"?dir=%2Fetc"), 403, "Invalid directory")

	// Default: paths relative to dir, one level, dot files skipped (glob).
	var names []string
	e.get(l+"?dir=workflows").json(t, &names)
	if want := []string{"Zed.json", "a.json"}; !slices.Equal(names, want) {
		t.Fatalf("flat %q, want %q", names, want)
	}
	e.get(l+"?dir=workflows&recurse=true").json(t, &names)
	if want := []string{"Zed.json", "a.json", "sub/b.json"}; !slices.Equal(names, want) {
		t.Fatalf("recurse %q, want %q", names, want)
	}
	// The frontend's own call.
	var infos []fileInfo
	a := e.get(l + "?dir=workflows&recurse=true&split=false&full_info=true")
	want(t, "full info", a, 200)
	a.json(t, &infos)
	if len(infos) != 3 || infos[2].Path != "sub/b.json" || infos[2].Size != 2 {
		t.Fatalf("full info %+v", infos)
	}
	now := time.Now().UnixMilli()
	for _, fi := range infos {
		if fi.Modified < now-86400000 || fi.Modified > now+60000 || fi.Created < now-86400000 {
			t.Fatalf("times not in milliseconds: %+v", fi)
		}
	}
	if !strings.Contains(string(a.body), `{"path":"Zed.json","size":1,"modified":`) || !strings.Contains(string(a.body), `,"created":`) {
		t.Fatalf("full info shape %s", a.body)
	}
	// split: [path, ...components]; full_info wins over split.
	want(t, "split", e.get(l+"?dir=workflows&recurse=TRUE&split=true"), 200,
		`[["Zed.json","Zed.json"],["a.json","a.json"],["sub/b.json","sub","b.json"]]`)
	a = e.get(l + "?dir=workflows&split=true&full_info=true")
	a.json(t, &infos)
	if len(infos) != 2 || infos[0].Path != "Zed.json" {
		t.Fatalf("full_info+split %s", a.body)
	}
	// A file as dir: glob finds nothing.
	want(t, "file as dir", e.get(l+"?dir=workflows%2Fa.json"), 200, `[]`)
	// dir is unquoted once more when it still holds "%".
	want(t, "double encoded", e.get(l+"?dir=workflows%252Fsub"), 200, `["b.json"]`)
	want(t, "space", e.get(l+"?dir=my%20dir"), 200, `["file.txt"]`)
	want(t, "root", e.get(l+"?dir=.&recurse=true"), 200, `["my dir/file.txt","workflows/Zed.json","workflows/a.json","workflows/sub/b.json"]`)
}

func TestListV2(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WorkflowDirs = nil })
	const l = "/user/1/api/v2/userdata"
	want(t, "fresh user", e.get(l), 200, `[]`)
	want(t, "fresh sub", e.get(l+"?path=workflows"), 404, "Requested path not found")
	setupTree(e)
	want(t, "missing", e.get(l+"?path=nothere"), 404, "Requested path not found")
	want(t, "file", e.get(l+"?path=workflows%2Fa.json"), 400, "Requested path is not a directory")
	want(t, "escape", e.get(l+"?path=..%2Fuser002"), 400, "Invalid path requested")
	want(t, "escape2", e.get(l+"?path=%252E%252E"), 400, "Invalid path requested")

	var got []v2Entry
	e.get(l+"?path=workflows").json(t, &got)
	// os.walk of the whole subtree, paths relative to the user folder,
	// folders first then files, each by lower-cased name; dot names kept.
	var short []string
	for _, x := range got {
		short = append(short, x.Type[:1]+":"+x.Path)
	}
	wantList := []string{"d:workflows/.hid", "d:workflows/sub", "f:workflows/.hidden.json", "f:workflows/a.json",
		"f:workflows/sub/b.json", "f:workflows/.hid/c.json", "f:workflows/Zed.json"}
	// Sort key is (type != directory, name.lower()): files by name only.
	if !slices.Equal(short, wantList) {
		t.Fatalf("v2 order\n got %q\nwant %q", short, wantList)
	}
	for _, x := range got {
		if x.Type == "file" {
			if x.Size == nil || x.Modified == nil || *x.Modified < 1e9 || *x.Modified > 1e10 {
				t.Fatalf("file entry %+v: modified must be float seconds", x)
			}
		} else if x.Size != nil || x.Modified != nil {
			t.Fatalf("directory entry with size: %+v", x)
		}
	}
	a := e.get(l + "?path=my%20dir")
	want(t, "space", a, 200)
	if !regexp.MustCompile(`^\[\{"name":"file.txt","path":"my dir/file.txt","type":"file","size":1,"modified":\d+(\.\d+)?\}\]$`).Match(a.body) {
		t.Fatalf("v2 shape %s", a.body)
	}
	got = nil
	e.get(l).json(t, &got)
	var dirs []string
	for _, x := range got[:4] {
		if x.Type == "directory" {
			dirs = append(dirs, x.Path)
		}
	}
	if want := []string{"workflows/.hid", "my dir", "workflows/sub", "workflows"}; !slices.Equal(dirs, want) || len(got) != 10 {
		t.Fatalf("root listing %q (%d entries)", dirs, len(got))
	}
}

func TestWorkflowRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	const u = "/user/1/api/userdata/"
	flow := []byte(`{"nodes":[],"links":[],"version":0.4}`)

	// Save a new workflow as the frontend does: overwrite=false, full_info.
	a := e.post(u+"workflows%2Fmy%20flow.json?overwrite=false&full_info=true", flow)
	want(t, "create", a, 200)
	var fi fileInfo
	a.json(t, &fi)
	if fi.Path != "workflows/my flow.json" || fi.Size != int64(len(flow)) || fi.Modified < 1e12 || fi.Created < 1e12 {
		t.Fatalf("create answer %s", a.body)
	}
	want(t, "exists", e.post(u+"workflows%2Fmy%20flow.json?overwrite=false", flow), 409, "File already exists")
	// Save again (persisted workflow): overwrite=true; the answer is the path.
	flow2 := []byte(`{"nodes":[1],"links":[]}`)
	want(t, "overwrite", e.post(u+"workflows%2Fmy%20flow.json?overwrite=true&full_info=false", flow2), 200, `"workflows/my flow.json"`)
	want(t, "default overwrite", e.post("/user/1/userdata/workflows%2Fmy%20flow.json", flow2), 200, `"workflows/my flow.json"`)
	var names []string
	e.get("/user/1/api/userdata?dir=workflows&recurse=true").json(t, &names)
	if !slices.Equal(names, []string{"my flow.json"}) {
		t.Fatalf("list %q", names)
	}
	// Load.
	a = e.get(u + "workflows%2Fmy%20flow.json")
	want(t, "load", a, 200, string(flow2))
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q", ct)
	}
	if a.header.Get("Content-Disposition") != "attachment" || a.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", a.header)
	}
	// Rename (move), as the frontend does: overwrite=false.
	e.put(1, "workflows/other.json", "o")
	want(t, "move onto existing", e.post(u+"workflows%2Fmy%20flow.json/move/workflows%2Fother.json?overwrite=false", nil), 409, "File already exists")
	a = e.post(u+"workflows%2Fmy%20flow.json/move/workflows%2Fdone%2Frenamed.json?overwrite=false&full_info=true", nil)
	want(t, "move", a, 200)
	a.json(t, &fi)
	if fi.Path != "workflows/done/renamed.json" || fi.Size != int64(len(flow2)) {
		t.Fatalf("move answer %s", a.body)
	}
	want(t, "old gone", e.get(u+"workflows%2Fmy%20flow.json"), 404, "")
	want(t, "new there", e.get(u+"workflows%2Fdone%2Frenamed.json"), 200, string(flow2))
	want(t, "move missing", e.post(u+"workflows%2Fnope.json/move/workflows%2Fx.json", nil), 404, "")
	want(t, "move plain", e.post(u+"workflows%2Fother.json/move/workflows%2Fdone%2Frenamed.json", nil), 200, `"workflows/done/renamed.json"`)
	if got, _ := e.read(1, "workflows/done/renamed.json"); got != "o" {
		t.Fatalf("overwrite by move: %q", got)
	}
	// Delete.
	want(t, "delete", e.del(u+"workflows%2Fdone%2Frenamed.json"), 204, "")
	want(t, "deleted", e.get(u+"workflows%2Fdone%2Frenamed.json"), 404, "")
	want(t, "delete again", e.del(u+"workflows%2Fdone%2Frenamed.json"), 404, "")
	want(t, "delete folder", e.del(u+"workflows%2Fdone"), 400)

	// ComfyUI unquotes {file} a second time when "%" is left.
	want(t, "double encoded", e.post(u+"workflows%252Fdouble.json", []byte("d")), 200, `"workflows/double.json"`)
	if got, _ := e.read(1, "workflows/double.json"); got != "d" {
		t.Fatal("double-encoded name not decoded twice")
	}
	want(t, "percent name", e.post(u+"100%25.json", []byte("p")), 200, `"100%.json"`)
	want(t, "empty body", e.post(u+"empty.json", nil), 200, `"empty.json"`)
	want(t, "read empty", e.get(u+"empty.json"), 200, "")

	// Routing of the raw path.
	want(t, "two segments", e.get(u+"workflows/double.json"), 404)
	want(t, "GET on move", e.get(u+"a/move/b"), 405)
	want(t, "folder", e.get(u+"workflows"), 403, "")

	// Only user.css at the top renders inline; active content downloads.
	e.post(u+"user.css", []byte("body{}"))
	a = e.get(u + "user.css")
	if a.header.Get("Content-Type") != "text/css" || a.header.Get("Content-Disposition") != "inline" {
		t.Fatalf("user.css headers %v", a.header)
	}
	e.post(u+"x%2Fuser.css", []byte("body{}"))
	e.post(u+"evil.html", []byte("<script>alert(1)</script>"))
	for _, f := range []string{"x%2Fuser.css", "evil.html"} {
		a = e.get(u + f)
		if a.header.Get("Content-Type") != "application/octet-stream" || a.header.Get("Content-Disposition") != "attachment" {
			t.Fatalf("%s headers %v", f, a.header)
		}
	}
}

func TestWorkshopWorkflows(t *testing.T) {
	fixtures, _ := filepath.Abs(filepath.Join("..", "..", "shared", "fixtures", "workflows"))
	ents, err := os.ReadDir(fixtures)
	if err != nil {
		t.Skipf("no workshop workflow fixtures at %s: %v", fixtures, err)
	}
	var fixtureNames []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			fixtureNames = append(fixtureNames, e.Name())
		}
	}
	if len(fixtureNames) == 0 {
		t.Skipf("no *.json fixtures in %s", fixtures)
	}
	late := t.TempDir()
	e := newEnv(t, func(c *Config) { c.WorkflowDirs = []string{fixtures, late} })
	e.put(1, "workflows/mine.json", "m")
	const u = "/user/1/api/userdata/"

	// Listed in the workflows folder's workshop/ for every participant, in
	// every listing shape, even for a participant with no folder yet (no
	// 404).
	for _, seat := range []int{1, 2} {
		var infos []fileInfo
		a := e.get(fmt.Sprintf("/user/%d/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", seat))
		want(t, "list", a, 200)
		a.json(t, &infos)
		got := map[string]int64{}
		for _, fi := range infos {
			got[fi.Path] = fi.Size
		}
		for _, n := range fixtureNames {
			st, _ := os.Stat(filepath.Join(fixtures, n))
			if got["workshop/"+n] != st.Size() {
				t.Fatalf("seat %d: %s listed with size %d, want %d (%s)", seat, n, got[n], st.Size(), a.body)
			}
		}
		if _, ok := got["mine.json"]; ok != (seat == 1) {
			t.Fatalf("seat %d sees mine.json: %v", seat, ok)
		}
	}
	var names []string
	e.get("/user/2/userdata?dir=workflows%2Fworkshop").json(t, &names)
	if !slices.Equal(names, fixtureNames) {
		t.Fatalf("flat list %q, want %q", names, fixtureNames)
	}
	// One name asked alone answers as the listing does.
	for _, n := range fixtureNames {
		if !e.store.HasWorkshopWorkflow(n) {
			t.Fatalf("HasWorkshopWorkflow(%q) = false, but it is listed", n)
		}
	}
	for _, n := range []string{"missing.json", "../" + fixtureNames[0], "", strings.TrimSuffix(fixtureNames[0], ".json")} {
		if e.store.HasWorkshopWorkflow(n) {
			t.Fatalf("HasWorkshopWorkflow(%q) = true", n)
		}
	}
	e.get("/user/2/userdata?dir=workflows").json(t, &names)
	if len(names) != 0 {
		t.Fatalf("seat 2's own workflows %q", names)
	}
	e.get("/user/2/userdata?dir=.&recurse=true").json(t, &names)
	if len(names) != len(fixtureNames) || names[0] != "workflows/workshop/"+fixtureNames[0] {
		t.Fatalf("root recursive %q", names)
	}
	var v2 []v2Entry
	e.get("/user/2/api/v2/userdata").json(t, &v2)
	v2a := v2
	v2 = nil
	if len(v2a) != 2+len(fixtureNames) || v2a[0].Path != "workflows" || v2a[0].Type != "directory" ||
		v2a[1].Path != "workflows/workshop" || v2a[1].Type != "directory" {
		t.Fatalf("v2 root %+v", v2a)
	}
	e.get("/user/1/api/v2/userdata?path=workflows").json(t, &v2)
	if len(v2) != 2+len(fixtureNames) {
		t.Fatalf("v2 workflows %+v", v2)
	}

	// Readable.
	name := fixtureNames[0]
	esc := "workflows%2Fworkshop%2F" + name
	content, _ := os.ReadFile(filepath.Join(fixtures, name))
	want(t, "read", e.get(u+esc), 200, string(content))

	// Read-only: 403 with a JSON message; 409 when not overwriting (the
	// name is taken); nothing is created in the participant's folder.
	a := e.post(u+esc+"?overwrite=true&full_info=true", []byte("{}"))
	want(t, "overwrite", a, 403)
	var je jsonErr
	a.json(t, &je)
	if je.Error.Code != "forbidden" || !strings.Contains(je.Error.Message, "read-only") || !strings.Contains(a.reason, "read-only") {
		t.Fatalf("read-only answer %v", a)
	}
	want(t, "create same name", e.post(u+esc+"?overwrite=false", []byte("{}")), 409)
	want(t, "delete", e.del(u+esc), 403)
	want(t, "move away", e.post(u+esc+"/move/workflows%2Fcopy.json", nil), 403)
	want(t, "move onto, no overwrite", e.post(u+"workflows%2Fmine.json/move/"+esc+"?overwrite=false", nil), 409)
	want(t, "move onto", e.post(u+"workflows%2Fmine.json/move/"+esc+"?overwrite=true", nil), 403)
	// Nothing else can be saved in the workshop folder either.
	a = e.post(u+"workflows%2Fworkshop%2Fnew.json?overwrite=false", []byte("{}"))
	want(t, "new file in the workshop folder", a, 403)
	if a.json(t, &je); !strings.Contains(je.Error.Message, "workshop folder") {
		t.Fatalf("workshop folder answer %v", a)
	}
	want(t, "move into", e.post(u+"workflows%2Fmine.json/move/workflows%2Fworkshop%2Fmine.json", nil), 403)
	if _, ok := e.read(1, "workflows/workshop/"+name); ok {
		t.Fatal("a participant file in the workshop folder")
	}
	if got, _ := os.ReadFile(filepath.Join(fixtures, name)); string(got) != string(content) {
		t.Fatal("workshop workflow changed")
	}
	// A participant's own copy of the same name sits beside the folder.
	want(t, "own copy", e.post(u+"workflows%2F"+name, content), 200)
	e.put(2, "stash2/own.json", "o")
	want(t, "folder move ok", e.post("/user/2/api/userdata/stash2/move/workflows", nil), 200, `"workflows"`)
	want(t, "moved in", e.get("/user/2/api/userdata/workflows%2Fown.json"), 200, "o")

	// A file added to a workshop folder appears without restart.
	if err := os.WriteFile(filepath.Join(late, "late.json"), []byte(`{"late":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.get("/user/2/api/userdata?dir=workflows&recurse=true").json(t, &names)
	if !slices.Contains(names, "workshop/late.json") {
		t.Fatalf("late workflow missing from %q", names)
	}
	want(t, "late read", e.get("/user/2/api/userdata/workflows%2Fworkshop%2Flate.json"), 200, `{"late":1}`)
	want(t, "late read-only", e.post("/user/2/api/userdata/workflows%2Fworkshop%2Flate.json", []byte("x")), 403)
	// Participants' own workflows next to them are writable as usual.
	want(t, "own", e.post(u+"workflows%2Fmine.json", []byte("m2")), 200, `"workflows/mine.json"`)
}

// TestIsolation tries every path trick from seat 1 against seat 2's files.
func TestIsolation(t *testing.T) {
	e := newEnv(t, nil)
	const secret = `{"secret":true}`
	e.put(2, "workflows/secret.json", secret)
	e.post("/user/2/api/settings", []byte(`{"Comfy.Secret":"s2"}`))
	e.put(1, "workflows/mine.json", "mine")
	outside := t.TempDir()
	decoy := filepath.Join(outside, "target.json")
	if err := os.WriteFile(decoy, []byte("decoy"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links planted inside seat 1's folder.
	must(t, os.Symlink(e.userPath(2, "workflows"), e.userPath(1, "workflows/link")))
	must(t, os.Symlink("../../user002/workflows/secret.json", e.userPath(1, "workflows/rel.json")))
	must(t, os.Symlink(decoy, e.userPath(1, "workflows/decoy.json")))
	must(t, os.Symlink("/etc", e.userPath(1, "etc")))
	must(t, os.Symlink("/etc/passwd", e.userPath(1, "passwd.json")))

	u := "/user/1/api/userdata/"
	tricks := []string{
		"..%2Fuser002%2Fworkflows%2Fsecret.json",
		"%2e%2e%2Fuser002%2Fworkflows%2Fsecret.json",
		"%252e%252e%252Fuser002%252Fworkflows%252Fsecret.json",
		"workflows%2F..%2F..%2Fuser002%2Fworkflows%2Fsecret.json",
		"%2F" + strings.ReplaceAll(strings.TrimPrefix(e.userPath(2, "workflows/secret.json"), "/"), "/", "%2F"),
		"..%5Cuser002%5Cworkflows%5Csecret.json",
		"workflows%2Fsecret.json%00",
		"workflows%2Flink%2Fsecret.json",
		"workflows%2Frel.json",
		"workflows%2Fdecoy.json",
		"etc%2Fpasswd",
		"passwd.json",
		"%2Fetc%2Fpasswd",
	}
	for _, tr := range tricks {
		for _, a := range []answer{e.get(u + tr), e.get("/user/1/userdata/" + tr)} {
			if a.status != 403 && a.status != 404 {
				t.Fatalf("GET %s: %v", tr, a)
			}
			if strings.Contains(string(a.body), "secret") || strings.Contains(string(a.body), "root:") || strings.Contains(string(a.body), "decoy") {
				t.Fatalf("GET %s leaked: %v", tr, a)
			}
		}
		for _, a := range []answer{
			e.post(u+tr+"?overwrite=true", []byte("pwned")),
			e.del(u + tr),
			e.post(u+tr+"/move/workflows%2Fstolen.json?overwrite=true", nil),
			e.post(u+"workflows%2Fmine.json/move/"+tr+"?overwrite=true", nil),
		} {
			if a.status != 403 && a.status != 404 {
				t.Fatalf("write/delete/move %s: %v", tr, a)
			}
		}
	}
	// Raw (unescaped) traversal never reaches a handler with a path.
	for _, raw := range []string{"/user/1/api/userdata/../../2/api/userdata/workflows%2Fsecret.json", "/user/1/api/userdata/..%2F../user002"} {
		if a := e.get(raw); a.status == 200 || strings.Contains(string(a.body), "secret") {
			t.Fatalf("raw %s: %v", raw, a)
		}
	}
	// Listings never show seat 2's files or anything behind a link.
	for _, l := range []string{
		"/user/1/api/userdata?dir=workflows&recurse=true&full_info=true",
		"/user/1/api/userdata?dir=.&recurse=true",
		"/user/1/api/v2/userdata",
		"/user/1/api/v2/userdata?path=workflows",
	} {
		a := e.get(l)
		want(t, l, a, 200)
		for _, bad := range []string{"secret", "link", "rel.json", "decoy", "passwd", "etc"} {
			if strings.Contains(string(a.body), bad) {
				t.Fatalf("%s shows %q: %s", l, bad, a.body)
			}
		}
	}
	for _, l := range []string{
		"/user/1/api/userdata?dir=..%2Fuser002",
		"/user/1/api/userdata?dir=..",
		"/user/1/api/userdata?dir=workflows%2Flink",
		"/user/1/api/userdata?dir=etc",
		"/user/1/api/userdata?dir=%2Fetc",
	} {
		want(t, l, e.get(l), 403, "Invalid directory")
	}
	for _, l := range []string{
		"/user/1/api/v2/userdata?path=..%2Fuser002",
		"/user/1/api/v2/userdata?path=workflows%2Flink",
		"/user/1/api/v2/userdata?path=etc",
		"/user/1/api/v2/userdata?path=%2Fetc",
	} {
		want(t, l, e.get(l), 400, "Invalid path requested")
	}
	// Seat 1's settings are not seat 2's.
	want(t, "settings", e.get("/user/1/api/settings/Comfy.Secret"), 200, "null")

	// Nothing changed: seat 2's file, the decoy, and the links themselves.
	if got, _ := e.read(2, "workflows/secret.json"); got != secret {
		t.Fatalf("seat 2's file changed: %q", got)
	}
	if got, _ := os.ReadFile(decoy); string(got) != "decoy" {
		t.Fatalf("decoy changed: %q", got)
	}
	for _, l := range []string{"workflows/link", "workflows/rel.json", "workflows/decoy.json", "etc", "passwd.json"} {
		if fi, err := os.Lstat(e.userPath(1, l)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("link %s removed or replaced", l)
		}
	}
	for _, f := range []string{"workflows/stolen.json"} {
		if _, ok := e.read(1, f); ok {
			t.Fatalf("%s created", f)
		}
	}
	if got, _ := e.read(1, "workflows/mine.json"); got != "mine" {
		t.Fatalf("seat 1's own file changed: %q", got)
	}

	// A participant folder that is itself a link is refused, not followed.
	must(t, os.Symlink(e.userPath(2, ""), filepath.Join(e.dir, "user003")))
	for _, a := range []answer{
		e.get("/user/3/api/userdata/workflows%2Fsecret.json"),
		e.get("/user/3/api/userdata?dir=workflows"),
		e.get("/user/3/api/v2/userdata"),
		e.get("/user/3/api/settings"),
		e.post("/user/3/api/userdata/workflows%2Fx.json", []byte("x")),
	} {
		if a.status != 403 || strings.Contains(string(a.body), "secret") {
			t.Fatalf("linked participant folder: %v", a)
		}
	}
	if _, ok := e.read(2, "workflows/x.json"); ok {
		t.Fatal("write through a linked participant folder")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSizeLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxFileSize = 1024; c.MaxUserBytes = 4096 })
	u := "/user/1/api/userdata/"
	a := e.post(u+"big.json", make([]byte, 1025))
	want(t, "too big", a, 413)
	var je jsonErr
	a.json(t, &je)
	if je.Error.Code != "too_large" || a.reason == "" || a.reason == "Request Entity Too Large" {
		t.Fatalf("413 answer %v", a)
	}
	if _, ok := e.read(1, "big.json"); ok {
		t.Fatal("over-size file written")
	}
	for i := range 4 {
		want(t, "fill", e.post(fmt.Sprintf("%sf%d.json", u, i), make([]byte, 1024)), 200)
	}
	want(t, "over quota", e.post(u+"f4.json", []byte("x")), 413)
	want(t, "replace same size", e.post(u+"f0.json", make([]byte, 1024)), 200)
	want(t, "settings over quota", e.post("/user/1/api/settings", []byte(`{"a":1}`)), 413)
	want(t, "other seat", e.post("/user/2/api/userdata/f.json", make([]byte, 1024)), 200)
	want(t, "delete", e.del(u+"f3.json"), 204)
	want(t, "room again", e.post(u+"f4.json", make([]byte, 1000)), 200)
	// A leftover temporary file (from a crash) is not listed, does not
	// count, and is cleaned up by the next write.
	e.put(1, tmpPrefix+"stale", strings.Repeat("x", 3000))
	want(t, "hidden tmp", e.get("/user/1/api/v2/userdata"), 200)
	if strings.Contains(string(e.get("/user/1/api/v2/userdata").body), tmpPrefix) {
		t.Fatal("temporary file listed")
	}
	want(t, "write after crash", e.post(u+"f0.json", make([]byte, 10)), 200)
	if _, ok := e.read(1, tmpPrefix+"stale"); ok {
		t.Fatal("stale temporary file kept")
	}
	want(t, "tmp name refused", e.post(u+tmpPrefix+"x", []byte("x")), 403)
	want(t, "encoded body refused", e.do("POST", u+"gz.json", []byte("x"), "Content-Encoding", "gzip"), 415)
}

func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t, nil)
	const writers, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan string, writers*rounds*4)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				seat := 1 + w%2
				body := strings.Repeat(fmt.Sprintf("w%dr%d;", w, r), 200+w*37)
				a := e.post(fmt.Sprintf("/user/%d/api/userdata/workflows%%2Fshared.json", seat), []byte(body))
				if a.status != 200 {
					errs <- a.String()
				}
				a = e.post(fmt.Sprintf("/user/%d/api/userdata/workflows%%2Fw%d-%d.json?overwrite=false", seat, w, r), []byte(body))
				if a.status != 200 {
					errs <- a.String()
				}
				a = e.post(fmt.Sprintf("/user/%d/api/settings/S.w%d", seat, w), []byte(fmt.Sprint(r)))
				if a.status != 200 {
					errs <- a.String()
				}
				a = e.get(fmt.Sprintf("/user/%d/api/userdata/workflows%%2Fshared.json", seat))
				if a.status != 200 || !whole(string(a.body)) {
					errs <- "torn read: " + a.String()[:min(40, len(a.String()))]
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	for seat := 1; seat <= 2; seat++ {
		got, _ := e.read(seat, "workflows/shared.json")
		if !whole(got) {
			t.Fatalf("seat %d: torn file", seat)
		}
		var names []string
		e.get(fmt.Sprintf("/user/%d/api/userdata?dir=workflows", seat)).json(t, &names)
		if len(names) != 1+writers/2*rounds {
			t.Fatalf("seat %d: %d files", seat, len(names))
		}
		var settings map[string]int
		e.get(fmt.Sprintf("/user/%d/api/settings", seat)).json(t, &settings)
		if len(settings) != writers/2 {
			t.Fatalf("seat %d: lost setting updates: %v", seat, settings)
		}
		for k, v := range settings {
			if v != rounds-1 {
				t.Fatalf("seat %d: %s = %d", seat, k, v)
			}
		}
		ents, _ := os.ReadDir(e.userPath(seat, "workflows"))
		for _, d := range ents {
			if strings.HasPrefix(d.Name(), tmpPrefix) {
				t.Fatalf("temporary file left: %s", d.Name())
			}
		}
	}
}

// whole reports whether s is one writer's body: a single token repeated.
func whole(s string) bool {
	i := strings.IndexByte(s, ';')
	if i < 0 {
		return false
	}
	tok := s[:i+1]
	return strings.Repeat(tok, len(s)/len(tok)) == s
}

func TestUnquoteAndClean(t *testing.T) {
	for in, out := range map[string]string{
		"a%2Fb": "a/b", "100%": "100%", "%zz": "%zz", "%41%42": "AB", "a%": "a%", "%e2%82%ac": "€", "%ff": "\uFFFD",
	} {
		if got := unquote(in); got != out {
			t.Errorf("unquote(%q) = %q, want %q", in, got, out)
		}
	}
	if got := decodeSegment("workflows%252Fa.json"); got != "workflows/a.json" {
		t.Errorf("decodeSegment = %q", got)
	}
	for in, out := range map[string]string{"a//b/./c": "a/b/c", "./x": "x", ".": "", "workflows/": "workflows"} {
		if got, err := cleanRel(in); err != nil || got != out {
			t.Errorf("cleanRel(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"..", "a/../b", "/etc", "a\\b", "a\x00b", "a\nb", tmpPrefix + "1", strings.Repeat("a/", 40), strings.Repeat("x", 300)} {
		if _, err := cleanRel(bad); err == nil {
			t.Errorf("cleanRel(%q) accepted", bad)
		}
	}
}

func TestObjectOrder(t *testing.T) {
	o, err := parseObject([]byte(`{"b":1,"a":{"z":1},"b":3}`))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := parseObject([]byte(`{"c":[],"a":null}`))
	merge(o, n)
	b, _ := o.MarshalJSON()
	if string(b) != `{"b":3,"a":null,"c":[]}` {
		t.Fatalf("merged %s", b)
	}
	for _, bad := range []string{``, `[]`, `{"a":1} x`, `{"a":}`, `"s"`} {
		if _, err := parseObject([]byte(bad)); err == nil {
			t.Errorf("parseObject(%q) accepted", bad)
		}
	}
}

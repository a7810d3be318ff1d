package sim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
)

func get(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func do(t *testing.T, method, u, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func pngOf(c color.NRGBA) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

func TestUploadNamingAndLoadImage(t *testing.T) {
	e := start(t, sim.Config{})
	up := func(name string, data []byte) *comfy.UploadResult {
		// Through a pipe: the client must stream, not need a length.
		pr, pw := io.Pipe()
		go func() { pw.Write(data); pw.Close() }()
		r, err := e.c.UploadImage(ctx(t), comfy.UploadRequest{Filename: name, Body: pr})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	blue, green := pngOf(color.NRGBA{0, 0, 255, 255}), pngOf(color.NRGBA{0, 255, 0, 255})
	if r := up("in.png", blue); r.Name != "in.png" || r.Type != "input" || r.Subfolder != "" {
		t.Fatalf("first upload %+v", r)
	}
	if r := up("in.png", blue); r.Name != "in.png" {
		t.Errorf("same content got %q", r.Name)
	}
	if r := up("in.png", green); r.Name != "in (1).png" {
		t.Errorf("clash got %q", r.Name)
	}
	r, err := e.c.UploadImage(ctx(t), comfy.UploadRequest{Filename: "in.png", Body: bytes.NewReader(green), Overwrite: true, Subfolder: "sub"})
	if err != nil || r.Name != "in.png" || r.Subfolder != "sub" {
		t.Fatalf("subfolder upload %+v %v", r, err)
	}
	ni, ok, err := e.c.NodeInfo(ctx(t), "LoadImage")
	if err != nil || !ok {
		t.Fatal(err)
	}
	if spec, _, _ := ni.Spec("image"); !slices.Equal(spec.Options, []any{"in (1).png", "in.png"}) {
		t.Errorf("LoadImage options %v", spec.Options)
	}
	p := comfy.Prompt{
		"1": {ClassType: "LoadImage", Inputs: map[string]any{"image": "in.png"}},
		"2": {ClassType: "ImageScale", Inputs: map[string]any{"image": comfy.Link("1", 0), "upscale_method": "nearest-exact", "width": 16, "height": 0, "crop": "disabled"}},
		"3": {ClassType: "SaveImage", Inputs: map[string]any{"images": comfy.Link("2", 0), "filename_prefix": "loaded/x"}},
	}
	id := e.queue(p, "", nil)
	e.sim.WaitIdle(ctx(t))
	files := e.history(id).Files()
	if len(files) != 1 || files[0].Subfolder != "loaded" {
		t.Fatalf("files %+v", files)
	}
	img := decodePNG(t, e.download(files[0].FileRef))
	if img.Bounds().Dx() != 16 || img.Bounds().Dy() != 16 {
		t.Errorf("scaled size %v", img.Bounds())
	}
	if c := color.NRGBAModel.Convert(img.At(1, 1)).(color.NRGBA); c != (color.NRGBA{0, 0, 255, 255}) {
		t.Errorf("pixel %v, want the uploaded blue", c)
	}
	// An upload with no file part is a 400.
	resp, _ := http.Post(e.hs.URL+"/upload/image", "multipart/form-data; boundary=x", strings.NewReader("--x--\r\n"))
	if resp.StatusCode != 400 {
		t.Errorf("empty upload: %d", resp.StatusCode)
	}
}

func TestViewChecks(t *testing.T) {
	e := start(t, sim.Config{})
	out, _, _ := e.sim.Dirs()
	os.MkdirAll(filepath.Join(out, "sub"), 0o755)
	os.WriteFile(filepath.Join(out, "sub", "a.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(out, "page.html"), []byte("<script>x</script>"), 0o644)
	view := func(q url.Values) (int, http.Header, []byte) { return get(t, e.hs.URL+"/api/view?"+q.Encode()) }
	cases := []struct {
		q    url.Values
		code int
	}{
		{url.Values{"filename": {"a.txt"}, "subfolder": {"sub"}, "type": {"output"}}, 200},
		{url.Values{"filename": {"a.txt [output]"}, "subfolder": {"sub"}}, 200},
		{url.Values{"filename": {"a.txt"}, "subfolder": {"sub"}, "type": {"input"}}, 404},
		{url.Values{"filename": {"../a.txt"}, "type": {"output"}}, 400},
		{url.Values{"filename": {"/etc/passwd"}}, 400},
		{url.Values{"filename": {"passwd"}, "subfolder": {"../../../../etc"}}, 403},
		{url.Values{"filename": {"a.txt"}, "type": {"bogus"}}, 400},
		{url.Values{"filename": {"missing.png"}}, 404},
		{url.Values{}, 404},
	}
	for _, c := range cases {
		code, _, _ := view(c.q)
		if code != c.code {
			t.Errorf("view %v: %d, want %d", c.q, code, c.code)
		}
	}
	code, h, body := view(url.Values{"filename": {"page.html"}})
	if code != 200 || h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment;") || string(body) != "<script>x</script>" {
		t.Errorf("html view: %d %v", code, h)
	}
	// The client streams and reports a missing file as an HTTP 404.
	_, err := e.c.View(ctx(t), comfy.FileRef{Filename: "missing.png", Type: "output"})
	if he, ok := err.(*comfy.HTTPError); !ok || he.StatusCode != 404 {
		t.Errorf("client view of missing: %v", err)
	}
}

func TestUserdataAndSettings(t *testing.T) {
	e := start(t, sim.Config{})
	u := e.hs.URL
	// "/" in a name travels as %2F in one path segment.
	if code, b := do(t, "POST", u+"/api/userdata/workflows%2Fmy%20flow.json?overwrite=false", `{"nodes":[]}`); code != 200 || string(b) != `"workflows/my flow.json"` {
		t.Fatalf("save: %d %s", code, b)
	}
	if code, _ := do(t, "POST", u+"/api/userdata/workflows%2Fmy%20flow.json?overwrite=false", `{}`); code != 409 {
		t.Errorf("overwrite=false on existing: %d", code)
	}
	if code, _, b := get(t, u+"/userdata/workflows%2Fmy%20flow.json"); code != 200 || string(b) != `{"nodes":[]}` {
		t.Errorf("read back: %d %s", code, b)
	}
	if code, _, b := get(t, u+"/api/userdata?dir=workflows&recurse=true&split=false&full_info=false"); code != 200 || string(b) != `["my flow.json"]` {
		t.Errorf("list: %d %s", code, b)
	}
	if code, _, b := get(t, u+"/api/userdata?dir=workflows&full_info=true"); code != 200 || !strings.Contains(string(b), `"size":12`) {
		t.Errorf("list full: %d %s", code, b)
	}
	if code, _, _ := get(t, u+"/api/userdata?dir=nothing"); code != 404 {
		t.Errorf("missing dir: %d", code)
	}
	if code, _, _ := get(t, u+"/api/userdata"); code != 400 {
		t.Errorf("no dir: %d", code)
	}
	if code, _, _ := get(t, u+"/api/userdata/..%2F..%2Fetc%2Fpasswd"); code != 403 {
		t.Errorf("traversal: %d", code)
	}
	if code, b := do(t, "POST", u+"/api/userdata/workflows%2Fmy%20flow.json/move/workflows%2Frenamed.json", ""); code != 200 || string(b) != `"workflows/renamed.json"` {
		t.Errorf("move: %d %s", code, b)
	}
	if code, _, b := get(t, u+"/api/v2/userdata?path=workflows"); code != 200 || !strings.Contains(string(b), `"path":"workflows/renamed.json"`) {
		t.Errorf("v2: %d %s", code, b)
	}
	if code, _ := do(t, "DELETE", u+"/api/userdata/workflows%2Frenamed.json", ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := do(t, "DELETE", u+"/api/userdata/workflows%2Frenamed.json", ""); code != 404 {
		t.Errorf("delete again: %d", code)
	}
	do(t, "POST", u+"/api/settings", `{"Comfy.Theme":"dark"}`)
	do(t, "POST", u+"/api/settings/Comfy.Locale", `"en"`)
	if _, _, b := get(t, u+"/api/settings"); !strings.Contains(string(b), `"Comfy.Theme":"dark"`) || !strings.Contains(string(b), `"Comfy.Locale":"en"`) {
		t.Errorf("settings %s", b)
	}
	if _, _, b := get(t, u+"/settings/Comfy.Theme"); string(b) != `"dark"` {
		t.Errorf("setting %s", b)
	}
	if _, _, b := get(t, u+"/api/users"); string(b) != `{"migrated":true,"storage":"server"}` {
		t.Errorf("users %s", b)
	}
}

func TestInfoRoutesBareAndUnderAPI(t *testing.T) {
	e := start(t, sim.Config{})
	for _, route := range []string{"/prompt", "/queue", "/history", "/object_info", "/object_info/KSampler", "/system_stats",
		"/features", "/embeddings", "/models", "/models/checkpoints", "/experiment/models", "/experiment/models/loras",
		"/extensions", "/users", "/settings", "/workflow_templates", "/i18n"} {
		for _, prefix := range []string{"", "/api"} {
			code, h, b := get(t, e.hs.URL+prefix+route)
			if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !json.Valid(b) {
				t.Errorf("%s%s: %d %s", prefix, route, code, h.Get("Content-Type"))
			}
		}
	}
	for _, route := range []string{"/internal/folder_paths", "/internal/files/output", "/internal/logs", "/api/jobs", "/sim/stats"} {
		if code, _, _ := get(t, e.hs.URL+route); code != 200 {
			t.Errorf("%s: %d", route, code)
		}
	}
	if code, _, _ := get(t, e.hs.URL+"/models/nope"); code != 404 {
		t.Errorf("unknown model folder: %d", code)
	}
	info, err := e.c.ObjectInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "VAEEncode",
		"SaveImage", "PreviewImage", "LoadImage", "EmptyImage", "ImageScale", "SaveVideo", "VHS_VideoCombine"} {
		if _, ok := info[n]; !ok {
			t.Errorf("object_info lacks %s", n)
		}
	}
	ks := info["KSampler"]
	if spec, _, _ := ks.Spec("steps"); spec.Type != "INT" {
		t.Errorf("KSampler.steps %+v", spec)
	} else if lo, _ := spec.Min(); lo != 1 {
		t.Errorf("steps min %v", lo)
	}
	if !info["SaveImage"].OutputNode || info["KSampler"].OutputNode {
		t.Error("output_node flags wrong")
	}
	if _, ok, _ := e.c.NodeInfo(ctx(t), "NoSuchNode"); ok {
		t.Error("unknown class found")
	}
	st, err := e.c.SystemStats(ctx(t))
	if err != nil || len(st.Devices) != 1 || st.Devices[0].VRAMTotal == 0 || st.System.ComfyUIVersion == "" {
		t.Errorf("system_stats %+v %v", st, err)
	}
	ff, err := e.c.Features(ctx(t))
	if err != nil || ff["supports_preview_metadata"] != true {
		t.Errorf("features %v %v", ff, err)
	}
	if m, err := e.c.Models(ctx(t), "checkpoints"); err != nil || !slices.Contains(m, "sd_xl_base_1.0.safetensors") {
		t.Errorf("models %v %v", m, err)
	}
	if err := e.c.Free(ctx(t), true, true); err != nil {
		t.Error(err)
	}
}

func TestVideoOutputsUnderTheirKeys(t *testing.T) {
	e := start(t, sim.Config{})
	p := comfy.Prompt{
		"1": {ClassType: "EmptyImage", Inputs: map[string]any{"width": 32, "height": 32, "batch_size": 4, "color": 0x123456}},
		"2": {ClassType: "VHS_VideoCombine", Inputs: map[string]any{"images": comfy.Link("1", 0), "frame_rate": 8, "loop_count": 0,
			"filename_prefix": "anim", "format": "image/gif", "pingpong": false, "save_output": true}},
		"3": {ClassType: "CreateVideo", Inputs: map[string]any{"images": comfy.Link("1", 0), "fps": 24}},
		"4": {ClassType: "SaveVideo", Inputs: map[string]any{"video": comfy.Link("3", 0), "filename_prefix": "video/clip", "format": "auto", "codec": "auto"}},
	}
	id := e.queue(p, "", nil)
	e.sim.WaitIdle(ctx(t))
	h := e.history(id)
	files := h.Files()
	if len(files) != 2 {
		t.Fatalf("files %+v", files)
	}
	gifFile, mp4File := files[0], files[1]
	if gifFile.Key != "gifs" || gifFile.Filename != "anim_00001.gif" || gifFile.Extra["format"] == nil {
		t.Errorf("VHS output %+v", gifFile)
	}
	if mp4File.Key != "images" || !mp4File.Animated || mp4File.Subfolder != "video" || mp4File.Filename != "clip_00001_.mp4" {
		t.Errorf("SaveVideo output %+v", mp4File)
	}
	if b := e.download(gifFile.FileRef); !bytes.HasPrefix(b, []byte("GIF89a")) {
		t.Error("not a GIF")
	}
	if b := e.download(mp4File.FileRef); string(b[4:8]) != "ftyp" {
		t.Error("not an MP4 box")
	}
}

func TestFrontEndRootAndEmbeddedPage(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "extensions", "core"), 0o755)
	os.MkdirAll(filepath.Join(root, "assets"), 0o755)
	os.WriteFile(filepath.Join(root, "index.html"), []byte("<html>frontend</html>"), 0o644)
	os.WriteFile(filepath.Join(root, "extensions", "core", "a.js"), []byte("//a"), 0o644)
	os.WriteFile(filepath.Join(root, "assets", "app.js"), []byte("//app"), 0o644)
	e := start(t, sim.Config{FrontEndRoot: root})
	if code, _, b := get(t, e.hs.URL+"/"); code != 200 || string(b) != "<html>frontend</html>" {
		t.Errorf("index: %d %s", code, b)
	}
	if _, _, b := get(t, e.hs.URL+"/api/extensions"); string(b) != `["/extensions/core/a.js"]` {
		t.Errorf("extensions %s", b)
	}
	if code, h, _ := get(t, e.hs.URL+"/assets/app.js"); code != 200 || !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Errorf("asset: %d %v", code, h)
	}
	if code, _, _ := get(t, e.hs.URL+"/assets/missing.js"); code != 404 {
		t.Errorf("missing asset: %d", code)
	}

	e2 := start(t, sim.Config{})
	code, _, b := get(t, e2.hs.URL+"/")
	page := string(b)
	if code != 200 || !strings.Contains(page, "ComfyUI simulator") {
		t.Fatalf("embedded page: %d", code)
	}
	// Relative URLs only, so the page works under /user/7/.
	for _, absolute := range []string{`fetch("/`, `"/api/`, `'/api/`, "`/ws"} {
		if strings.Contains(page, absolute) {
			t.Errorf("embedded page uses an absolute URL: %s", absolute)
		}
	}
	for _, want := range []string{`lastIndexOf("/")`, `"api" + route`, "ws?clientId=", "feature_flags", `api("/prompt")`} {
		if !strings.Contains(page, want) {
			t.Errorf("embedded page lacks %q", want)
		}
	}
}

func TestSimControlRoutes(t *testing.T) {
	e := start(t, sim.Config{})
	if code, b := do(t, "POST", e.hs.URL+"/sim/fault", `{"fail_node":"SaveImage","view_delay":"1ms"}`); code != 200 || !strings.Contains(string(b), "SaveImage") {
		t.Fatalf("set fault: %d %s", code, b)
	}
	id := e.queue(emptyImageGraph(5, "f"), "", nil)
	e.sim.WaitIdle(ctx(t))
	if e.history(id).Succeeded() {
		t.Error("fail_node from /sim/fault ignored")
	}
	_, _, b := get(t, e.hs.URL+"/sim/stats")
	var st sim.Stats
	json.Unmarshal(b, &st)
	if st.Executions[id] != 1 || st.PromptsFailed != 1 || st.Faults.FailNode != "SaveImage" {
		t.Errorf("stats %s", b)
	}
	if code, _ := do(t, "POST", e.hs.URL+"/sim/drop_ws", ""); code != 200 {
		t.Errorf("drop_ws %d", code)
	}
	if _, _, b := get(t, e.hs.URL+"/api/jobs/"+id); !strings.Contains(string(b), `"status":"failed"`) {
		t.Errorf("job %s", b)
	}
}

// maskForm is a /upload/mask body: the mask under name, and original_ref.
func maskForm(t *testing.T, name, subfolder, originalRef string, mask []byte) (string, *bytes.Buffer) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("image", name)
	fw.Write(mask)
	mw.WriteField("type", "input")
	mw.WriteField("subfolder", subfolder)
	mw.WriteField("original_ref", originalRef)
	mw.Close()
	return mw.FormDataContentType(), &body
}

// /upload/mask stores the original with the mask's alpha, as ComfyUI does;
// a mask of another size is PIL's error, a 500.
func TestUploadMaskComposites(t *testing.T) {
	e := start(t, sim.Config{})
	if _, err := e.c.UploadImage(ctx(t), comfy.UploadRequest{Filename: "orig.png", Body: bytes.NewReader(pngOf(color.NRGBA{0, 0, 255, 255}))}); err != nil {
		t.Fatal(err)
	}
	ct, body := maskForm(t, "clipspace-mask-1.png", "clipspace", `{"filename":"orig.png","subfolder":"","type":"input"}`, pngOf(color.NRGBA{0, 0, 0, 77}))
	resp, err := http.Post(e.hs.URL+"/upload/mask", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload/mask: %d", resp.StatusCode)
	}
	img := decodePNG(t, e.download(comfy.FileRef{Filename: "clipspace-mask-1.png", Subfolder: "clipspace", Type: "input"}))
	if c := color.NRGBAModel.Convert(img.At(3, 3)).(color.NRGBA); c != (color.NRGBA{0, 0, 255, 77}) {
		t.Errorf("composite pixel %v, want the original's blue with the mask's alpha 77", c)
	}

	small := new(bytes.Buffer)
	png.Encode(small, image.NewNRGBA(image.Rect(0, 0, 2, 2)))
	ct, body = maskForm(t, "m2.png", "clipspace", `{"filename":"orig.png [input]"}`, small.Bytes())
	resp, err = http.Post(e.hs.URL+"/upload/mask", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("mask of another size: %d, want 500", resp.StatusCode)
	}
}

// An instance without a node class (a custom node not installed there)
// leaves it out of object_info and refuses a prompt that uses it.
func TestWithoutNodes(t *testing.T) {
	e := start(t, sim.Config{WithoutNodes: []string{"ImageInvert"}})
	info, err := e.c.ObjectInfo(ctx(t))
	if err != nil || info["ImageInvert"].Category != "" || info["SaveImage"].Category == "" {
		t.Fatalf("object_info: ImageInvert %+v, SaveImage %+v, %v", info["ImageInvert"], info["SaveImage"], err)
	}
	var perr *comfy.PromptError
	_, err = e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: json.RawMessage(
		`{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}},"2":{"class_type":"ImageInvert","inputs":{"image":["1",0]}},"3":{"class_type":"SaveImage","inputs":{"images":["2",0],"filename_prefix":"x"}}}`)})
	if !errors.As(err, &perr) || !strings.Contains(perr.Info.Message, "ImageInvert") {
		t.Errorf("a prompt with ImageInvert: %v", err)
	}
}

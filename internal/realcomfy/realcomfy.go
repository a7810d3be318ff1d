// Package realcomfy starts real ComfyUI processes (on the CPU, without model
// weights) for the tests that must hold against the real thing rather than
// comfysim: the kit in ../shared/comfyui by default, or the operator's own
// checkouts named in COMFYUI_DIRS.
//
// Where no real ComfyUI can run, tests that need one are skipped with the
// reason, except in CI (CI=true), where they fail.
package realcomfy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is one ComfyUI source tree that can be started.
type Version struct {
	// Name is the kit's version ("0.3.64", "2024-08-15"), or for a checkout
	// from COMFYUI_DIRS its comfyui_version.py version, else its folder name.
	Name string
	// Dir is the source tree (read-only: it is copied before it runs).
	Dir string
	// AcceptsPromptID says whether this ComfyUI keeps a client's prompt_id
	// (ComfyUI does since mid-2025; older versions make their own).
	AcceptsPromptID bool
	// LegacyFrontend says the tree ships the hand-written web/ frontend.
	LegacyFrontend bool

	kit string // the kit folder holding start.sh, or "" for a checkout
}

func (v Version) String() string { return v.Name }

// Kit is the folder with the bundled ComfyUI versions: COMFYUI_KIT, or
// ../shared/comfyui beside the module root.
func Kit() string {
	if k := os.Getenv("COMFYUI_KIT"); k != "" {
		return k
	}
	if root := moduleRoot(); root != "" {
		return filepath.Join(filepath.Dir(root), "shared", "comfyui")
	}
	return ""
}

// moduleRoot is the folder holding go.mod, above the working directory.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Python is the interpreter ComfyUI runs with: COMFYUI_PYTHON, else
// Debian's /usr/bin/python3 (where the kit's install-deps.sh puts torch).
func Python() string {
	if p := os.Getenv("COMFYUI_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

var (
	probeOnce sync.Once
	probeErr  error
	versions  []Version
)

// Versions lists the ComfyUI versions this machine can run, or skips the
// test (fails it in CI) with the reason there are none.
func Versions(t testing.TB) []Version {
	t.Helper()
	probeOnce.Do(func() { versions, probeErr = discover() })
	if probeErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real ComfyUI is required in CI: %v", probeErr)
		}
		t.Skipf("no real ComfyUI can run here (%v); skipping the real-ComfyUI test", probeErr)
	}
	return versions
}

// Get returns the named version (as Versions lists it), or skips the test
// when this machine has no such version (a COMFYUI_DIRS run may hold other
// versions than the kit).
func Get(t testing.TB, name string) Version {
	t.Helper()
	for _, v := range Versions(t) {
		if v.Name == name {
			return v
		}
	}
	t.Skipf("ComfyUI %s is not among the versions here (%v)", name, Versions(t))
	return Version{}
}

func discover() ([]Version, error) {
	py := Python()
	out, err := exec.Command(py, "-c", "import torch, aiohttp, yaml, PIL").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s cannot import ComfyUI's dependencies (run ../shared/comfyui/install-deps.sh): %v %s",
			py, err, bytes.TrimSpace(lastLine(out)))
	}
	if dirs := os.Getenv("COMFYUI_DIRS"); dirs != "" {
		var vs []Version
		for _, d := range strings.FieldsFunc(dirs, func(r rune) bool { return r == ',' || r == ':' }) {
			v, err := checkout(d)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		return vs, nil
	}
	kit := Kit()
	if kit == "" {
		return nil, errors.New("no ComfyUI kit found (set COMFYUI_KIT or COMFYUI_DIRS)")
	}
	if _, err := os.Stat(filepath.Join(kit, "start.sh")); err != nil {
		return nil, fmt.Errorf("no ComfyUI kit at %s (set COMFYUI_KIT or COMFYUI_DIRS): %v", kit, err)
	}
	trees, _ := filepath.Glob(filepath.Join(kit, "ComfyUI-*"))
	var vs []Version
	for _, tree := range trees {
		v, err := checkout(tree)
		if err != nil {
			return nil, err
		}
		v.Name = strings.TrimPrefix(filepath.Base(tree), "ComfyUI-")
		v.kit = kit
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("the kit at %s holds no ComfyUI-* tree", kit)
	}
	return vs, nil
}

var versionLine = regexp.MustCompile(`__version__\s*=\s*"([^"]+)"`)

// checkout describes a ComfyUI source tree from what it holds.
func checkout(dir string) (Version, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Version{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "main.py")); err != nil {
		return Version{}, fmt.Errorf("%s is not a ComfyUI checkout (no main.py)", dir)
	}
	v := Version{Name: filepath.Base(dir), Dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, "comfyui_version.py")); err == nil {
		if m := versionLine.FindSubmatch(b); m != nil {
			v.Name = string(m[1])
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "web")); err == nil && fi.IsDir() {
		v.LegacyFrontend = true
	}
	// ComfyUI keeps a client's prompt_id since it reads it from the body in
	// post_prompt (mid-2025).
	if b, err := os.ReadFile(filepath.Join(dir, "server.py")); err == nil {
		v.AcceptsPromptID = bytes.Contains(b, []byte(`json_data["prompt_id"]`)) ||
			bytes.Contains(b, []byte(`json_data.get("prompt_id"`)) ||
			bytes.Contains(b, []byte(`"prompt_id" in json_data`))
	}
	return v, nil
}

// Options changes how an instance starts.
type Options struct {
	// FrontEndRoot serves this built frontend (--front-end-root).
	FrontEndRoot string
	// Args are more ComfyUI flags.
	Args []string
	// Env is added to the process environment.
	Env []string
	// CustomNodes are custom nodes only this instance has: file name (a
	// Python module, "name.py") -> its source. They load from a folder of
	// the instance's own, named in an extra paths file (no checkout is
	// written to).
	CustomNodes map[string]string
}

// Instance is a running ComfyUI process.
type Instance struct {
	Version Version
	// URL is its base, http://127.0.0.1:PORT.
	URL  string
	Port int
	// Work holds its copy of the tree and its output/, input/, temp/, user/.
	Work string

	t      testing.TB
	opts   Options
	log    *logFile
	marker string // a file in output/ that tells this instance from another on the port

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs v on a free port in a new folder and returns once it answers
// GET /system_stats. It is killed when the test ends; its log is printed if
// the test failed.
func Start(t testing.TB, v Version, opts Options) *Instance {
	t.Helper()
	in, err := newInstance(t, v, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.startFresh(); err != nil {
		t.Fatal(err)
	}
	return in
}

// newInstance picks a port and folder for v and registers its cleanup.
func newInstance(t testing.TB, v Version, opts Options) (*Instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	in := &Instance{Version: v, Port: port, URL: "http://127.0.0.1:" + strconv.Itoa(port),
		Work: t.TempDir(), t: t, opts: opts, marker: fmt.Sprintf("realcomfy-%016x.png", rand.Uint64())}
	in.log = &logFile{path: filepath.Join(in.Work, "comfyui.log")}
	t.Cleanup(func() {
		in.Kill()
		if t.Failed() {
			t.Logf("ComfyUI %s (%s) log, last lines:\n%s", v.Name, in.URL, in.log.tail(60))
		}
	})
	return in, nil
}

// StartAll starts one instance of each version at once (each takes 2-20 s
// to come up, so a test with several waits for the slowest, not the sum).
func StartAll(t testing.TB, vs []Version, opts Options) []*Instance {
	t.Helper()
	out := make([]*Instance, len(vs))
	errs := make([]error, len(vs))
	var wg sync.WaitGroup
	for i, v := range vs {
		in, err := newInstance(t, v, opts)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = in
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = in.startFresh() }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// errPortTaken says another process answered on the instance's port.
var errPortTaken = errors.New("realcomfy: another process answered on the port")

// startFresh starts a new instance, on another port when another process
// took the one picked for it (it was free when picked; a test running in
// parallel can bind it before ComfyUI does).
func (in *Instance) startFresh() error {
	for try := 1; ; try++ {
		err := in.start()
		if !errors.Is(err, errPortTaken) || try == 5 {
			return err
		}
		port, perr := freePort()
		if perr != nil {
			return perr
		}
		in.Port, in.URL = port, "http://127.0.0.1:"+strconv.Itoa(port)
	}
}

func (in *Instance) start() error {
	if err := os.MkdirAll(filepath.Join(in.Work, "ComfyUI", "custom_nodes"), 0o755); err != nil {
		return err
	}
	// A file only this instance serves, to know that it is this instance
	// that answers on the port.
	if err := os.MkdirAll(filepath.Join(in.Work, "output"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(in.Work, "output", in.marker), markerPNG(), 0o644); err != nil {
		return err
	}
	if err := in.writeCustomNodes(); err != nil {
		return err
	}
	var cmd *exec.Cmd
	if in.Version.kit != "" {
		// An empty folder is not in the kit's copy, and ComfyUI lists it at start.
		args := append([]string{filepath.Join(in.Version.kit, "start.sh"), in.Version.Name, strconv.Itoa(in.Port), in.Work}, in.flags()...)
		cmd = exec.Command("bash", args...)
	} else {
		args := append([]string{"main.py", "--cpu", "--listen", "127.0.0.1", "--port", strconv.Itoa(in.Port),
			"--output-directory", filepath.Join(in.Work, "output"),
			"--input-directory", filepath.Join(in.Work, "input"),
			"--temp-directory", filepath.Join(in.Work, "temp")}, in.flags()...)
		cmd = exec.Command(Python(), args...)
		cmd.Dir = in.Version.Dir
	}
	cmd.Env = append(os.Environ(), in.opts.Env...)
	f, err := in.log.open()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a kill reaches python and anything it started;
	// and killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start ComfyUI %s: %w", in.Version.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	return in.waitReady(done)
}

func (in *Instance) flags() []string {
	var args []string
	if in.opts.FrontEndRoot != "" {
		args = append(args, "--front-end-root", in.opts.FrontEndRoot)
	}
	if len(in.opts.CustomNodes) > 0 {
		args = append(args, "--extra-model-paths-config", filepath.Join(in.Work, "extra_paths.yaml"))
	}
	return append(args, in.opts.Args...)
}

// PassThroughNode is the source of a custom node module with one class,
// named class, that passes an image on: for Options.CustomNodes, a node
// only the instances given it have.
func PassThroughNode(class string) string {
	return fmt.Sprintf(`class %[1]s:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "realcomfy"

    def run(self, image):
        return (image,)


NODE_CLASS_MAPPINGS = {%[1]q: %[1]s}
`, class)
}

// writeCustomNodes puts Options.CustomNodes in a folder of the instance's
// and names it in extra_paths.yaml, which ComfyUI reads at start.
func (in *Instance) writeCustomNodes() error {
	if len(in.opts.CustomNodes) == 0 {
		return nil
	}
	dir := filepath.Join(in.Work, "custom_nodes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, src := range in.opts.CustomNodes {
		if filepath.Base(name) != name || !strings.HasSuffix(name, ".py") {
			return fmt.Errorf("realcomfy: custom node file %q is not a module name", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			return err
		}
	}
	yaml := fmt.Sprintf("realcomfy:\n  custom_nodes: %s\n", strconv.Quote(dir))
	return os.WriteFile(filepath.Join(in.Work, "extra_paths.yaml"), []byte(yaml), 0o644)
}

// waitReady polls /system_stats: ComfyUI prints nothing reliable to wait on
// (its banner comes before the socket is bound on some versions).
func (in *Instance) waitReady(done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(in.URL + "/system_stats")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if in.answersAsItself(client) {
					return nil
				}
				in.Kill()
				return errPortTaken
			}
		}
		select {
		case <-done:
			if strings.Contains(strings.ToLower(in.log.tail(20)), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("ComfyUI %s exited before it answered; log:\n%s", in.Version.Name, in.log.tail(40))
		case <-ctx.Done():
			return fmt.Errorf("ComfyUI %s did not answer %s/system_stats within 3 minutes; log:\n%s", in.Version.Name, in.URL, in.log.tail(40))
		case <-tick.C:
		}
	}
}

// answersAsItself reports whether the server on the port serves this
// instance's marker file.
func (in *Instance) answersAsItself(c *http.Client) bool {
	resp, err := c.Get(in.URL + "/view?type=output&filename=" + in.marker)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// markerPNG is a one-pixel PNG.
func markerPNG() []byte {
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1)))
	return b.Bytes()
}

// Kill ends the process with SIGKILL (as a crash would) and waits for it.
func (in *Instance) Kill() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Restart starts the instance again on the same port and folder (after
// Kill), and returns once it answers.
func (in *Instance) Restart() {
	in.t.Helper()
	in.Kill()
	if err := in.start(); err != nil {
		in.t.Fatal(err)
	}
}

// Log is what the process has printed so far.
func (in *Instance) Log() string { return in.log.tail(0) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logFile keeps the process's output in a file (it can be long, and it must
// outlive restarts).
type logFile struct{ path string }

func (l *logFile) open() (*os.File, error) {
	return os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// tail returns the last n lines (all for n <= 0).
func (l *logFile) tail(n int) string {
	b, _ := os.ReadFile(l.path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// KitFrontend is the built frontend the kit carries (v1.44.17), or "".
func KitFrontend() string {
	dirs, _ := filepath.Glob(filepath.Join(Kit(), "frontend-*"))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "index.html")); err == nil {
			return d
		}
	}
	return ""
}

// LatestFrontend is the newest published frontend, the static/ folder of the
// Python package comfyui-frontend-package: COMFYUI_FRONTEND_LATEST, or where
// .ci/run installs it (.cache/frontend under the module root), or "".
func LatestFrontend() string {
	if d := os.Getenv("COMFYUI_FRONTEND_LATEST"); d != "" {
		return d
	}
	d := filepath.Join(moduleRoot(), ".cache", "frontend", "comfyui_frontend_package", "static")
	if _, err := os.Stat(filepath.Join(d, "index.html")); err == nil {
		return d
	}
	return ""
}

package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/store"
)

// infoCache holds the last object_info of the GPU hosts (every class any of
// them has: Config.ObjectInfo), parsed once per change (a real one is
// megabytes).
type infoCache struct {
	mu      sync.Mutex
	fetched time.Time // when raw was last confirmed with the GPU hosts
	raw     []byte
	// classes is object_info in the instances' key order and bytes (the
	// frontend builds widgets in key order), less the classes the workshop
	// does not allow.
	classes jsonobj.Object
	info    comfy.ObjectInfo    // the same, parsed, for validation
	loaders map[string][]string // class -> inputs that take an uploaded file
}

// infoFreshness is how long an object_info is used before it is checked
// with the GPU hosts again.
const infoFreshness = 2 * time.Second

// uploadKeys mark the combo inputs that list files of the input folder.
var uploadKeys = []string{"image_upload", "video_upload", "audio_upload", "upload", "mask_upload"}

func (ic *infoCache) load(raw []byte, allowed func(string) bool) error {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if bytes.Equal(raw, ic.raw) {
		ic.fetched = time.Now()
		return nil
	}
	all, err := jsonobj.Parse(raw)
	if err != nil {
		return err
	}
	var info comfy.ObjectInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return err
	}
	classes := make(jsonobj.Object, 0, len(all))
	for _, m := range all {
		if allowed(m.Key) {
			classes = append(classes, m)
		}
	}
	loaders := map[string][]string{}
	for class, n := range info {
		if !allowed(class) {
			delete(info, class)
			continue
		}
		for _, name := range n.InputNames() {
			spec, _, _ := n.Spec(name)
			if !spec.IsCombo() {
				continue
			}
			for _, k := range uploadKeys {
				if v, ok := spec.Config[k].(bool); ok && v {
					loaders[class] = append(loaders[class], name)
					break
				}
			}
		}
	}
	ic.raw, ic.classes, ic.info, ic.loaders, ic.fetched = raw, classes, info, loaders, time.Now()
	return nil
}

// userView is object_info as one participant sees it: loaders list their
// own uploads, not the GPU host's input folder.
type userView struct {
	info    comfy.ObjectInfo
	classes jsonobj.Object
	uploads map[string]bool
	loaders map[string][]string
}

func (p *Proxy) allowed(class string) bool {
	if len(p.cfg.NodesAllow) > 0 && !slices.Contains(p.cfg.NodesAllow, class) {
		return false
	}
	return !slices.Contains(p.cfg.NodesDeny, class)
}

// viewFor builds the participant's object_info; false when none is known
// (no GPU host has ever been connected).
func (p *Proxy) viewFor(ctx context.Context, user string) (*userView, bool) {
	if p.cfg.ObjectInfo == nil {
		return nil, false
	}
	// Confirmed with the GPU hosts at most every few seconds: a real
	// object_info is megabytes and changes only when nodes are installed.
	p.info.mu.Lock()
	fresh := p.info.raw != nil && time.Since(p.info.fetched) < infoFreshness
	p.info.mu.Unlock()
	if !fresh {
		raw, err := p.cfg.ObjectInfo(ctx)
		if err != nil || p.info.load(raw, p.allowed) != nil {
			return nil, false
		}
	}
	uploads, _ := p.cfg.Files.List(store.Inputs, user)
	p.info.mu.Lock()
	defer p.info.mu.Unlock()
	v := &userView{info: make(comfy.ObjectInfo, len(p.info.info)), classes: slices.Clone(p.info.classes), uploads: map[string]bool{}, loaders: p.info.loaders}
	for k, n := range p.info.info {
		v.info[k] = n
	}
	options := make([]any, 0, len(uploads))
	for _, u := range uploads {
		v.uploads[u] = true
		options = append(options, u)
	}
	list := jsonobj.Raw(options)
	for class, inputs := range v.loaders {
		n := v.info[class]
		n.Input.Required = withOptions(n.Input.Required, inputs, options)
		n.Input.Optional = withOptions(n.Input.Optional, inputs, options)
		v.info[class] = n
		if raw, ok := v.classes.Get(class); ok {
			v.classes.Set(class, withUploads(raw, inputs, list))
		}
	}
	return v, true
}

// withUploads rewrites one class's definition with the named combos'
// choices replaced by list, every other byte as the instance sent it.
func withUploads(class json.RawMessage, inputs []string, list json.RawMessage) json.RawMessage {
	for _, name := range inputs {
		for _, cat := range []string{"required", "optional"} {
			out, ok, err := jsonobj.Edit(class, []string{"input", cat, name}, func(spec json.RawMessage) (json.RawMessage, error) {
				return specWithOptions(spec, list)
			})
			if err == nil && ok {
				class = out
				break
			}
		}
	}
	return class
}

// specWithOptions replaces a combo's choices: the first element of an
// old-style spec ([[choices], {config}]), or config "options" of a
// new-style one (["COMBO", {"options": [...]}]).
func specWithOptions(spec, list json.RawMessage) (json.RawMessage, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(spec, &parts); err != nil || len(parts) == 0 {
		return nil, errNotCombo
	}
	switch {
	case bytes.HasPrefix(bytes.TrimSpace(parts[0]), []byte("[")):
		parts[0] = list
	case len(parts) > 1:
		cfg, ok, err := jsonobj.Edit(parts[1], []string{"options"}, func(json.RawMessage) (json.RawMessage, error) { return list, nil })
		if err != nil || !ok {
			return nil, errNotCombo
		}
		parts[1] = cfg
	default:
		return nil, errNotCombo
	}
	return json.Marshal(parts)
}

var errNotCombo = errors.New("not a combo input")

// withOptions copies specs with the named combos' choices replaced.
func withOptions(specs map[string]comfy.InputSpec, inputs []string, options []any) map[string]comfy.InputSpec {
	if specs == nil {
		return nil
	}
	out := make(map[string]comfy.InputSpec, len(specs))
	for k, s := range specs {
		if slices.Contains(inputs, k) {
			s.Options = options
		}
		out[k] = s
	}
	return out
}

// stripAnnotation drops ComfyUI's " [input]" suffix from a file reference.
func stripAnnotation(v string) string {
	for _, a := range []string{" [input]", " [output]", " [temp]"} {
		v = strings.TrimSuffix(v, a)
	}
	return v
}

// validateOptions checks loader inputs as ComfyUI's LoadImage does (the file
// must exist: here, among the participant's uploads), and the inputs that
// name files a node writes (filename_prefix...): a CR, LF or bidi
// character there would make a file that cannot be fetched or shown.
func (v *userView) validateOptions() comfy.ValidateOptions {
	return comfy.ValidateOptions{Custom: func(nodeID string, node comfy.Node, info comfy.NodeInfo) ([]string, map[string]string) {
		failed := map[string]string{}
		inputs := v.loaders[node.ClassType]
		for _, in := range inputs {
			val, ok := node.Inputs[in].(string)
			if !ok {
				continue
			}
			if !v.uploads[stripAnnotation(val)] {
				failed[in] = "Invalid image file: " + val
			}
		}
		for in, val := range node.Inputs {
			if s, ok := val.(string); ok && namesFile(in) && !workshop.SafeText(s) {
				inputs = append(inputs, in)
				failed[in] = "control or text-direction characters are not allowed in file names"
			}
		}
		return inputs, failed
	}}
}

// namesFile reports the inputs that name the files a node writes:
// filename_prefix of ComfyUI's Save nodes, and the like of custom nodes.
func namesFile(input string) bool {
	in := strings.ToLower(input)
	return strings.Contains(in, "filename") || strings.HasSuffix(in, "prefix") || in == "subfolder" || in == "output_path"
}

// rewriteInputs points the graph's file references at the participant's
// folder on the GPU host and returns the uploads to ship with the job.
func (v *userView) rewriteInputs(p comfy.Prompt, user string) []string {
	var used []string
	for id, node := range p {
		for _, in := range v.loaders[node.ClassType] {
			val, ok := node.Inputs[in].(string)
			if !ok || !v.uploads[stripAnnotation(val)] {
				continue
			}
			ref := stripAnnotation(val)
			node.Inputs[in] = workshop.InputFolder(user) + "/" + ref
			if !slices.Contains(used, ref) {
				used = append(used, ref)
			}
		}
		p[id] = node
	}
	return used
}

// objectInfo serves the participant's object_info, in the instance's key
// order.
func (p *Proxy) objectInfo(c *fiber.Ctx) error {
	v, ok := p.viewFor(c.UserContext(), userOf(c))
	if !ok {
		return workshop.Errorf(workshop.EUNAVAILABLE, "the GPUs are not connected yet")
	}
	return sendObject(c, v.classes)
}

func (p *Proxy) objectInfoOne(c *fiber.Ctx) error {
	v, ok := p.viewFor(c.UserContext(), userOf(c))
	if !ok {
		return workshop.Errorf(workshop.EUNAVAILABLE, "the GPUs are not connected yet")
	}
	class := c.Params("class")
	if n, ok := v.classes.Get(class); ok {
		return sendObject(c, jsonobj.Object{{Key: class, Value: n}})
	}
	return c.JSON(fiber.Map{}) // ComfyUI answers {} for an unknown class
}

func sendObject(c *fiber.Ctx, o jsonobj.Object) error {
	b, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	return c.Type("json").Send(b)
}

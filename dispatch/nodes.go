package dispatch

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// nodeList is one instance's object_info: as it sent it, its classes in
// its order with their definitions' bytes, and which classes it has.
// Instances set up alike send the same bytes and share one.
type nodeList struct {
	raw     []byte
	classes jsonobj.Object
	has     map[string]bool
	sum     [sha256.Size]byte
}

// nodeFresh is how old the node list served to participants may be before
// it is read again from the instance whose definitions it carries: model
// files appear in its choices without a restart of ComfyUI.
const nodeFresh = 2 * time.Second

// ErrNoNodes is ObjectInfo's error when no instance has sent its node list
// and none is kept from before.
var ErrNoNodes = errors.New("no GPU instance has sent its node list yet")

// readNodes reads the instance's object_info unless the list held was read
// less than maxAge ago and nothing since made it doubtful. One read runs
// at a time; a caller that waited for another's gets that one.
func (w *worker) readNodes(ctx context.Context, maxAge time.Duration) error {
	w.nodesMu.Lock()
	defer w.nodesMu.Unlock()
	w.mu.Lock()
	fresh := w.nodes != nil && !w.nodesStale && time.Since(w.nodesAt) < maxAge
	w.mu.Unlock()
	if fresh {
		return nil
	}
	raw, err := w.client.ObjectInfoRaw(ctx)
	if err != nil {
		return err
	}
	list, err := w.d.nodeListOf(raw)
	if err != nil {
		return fmt.Errorf("the instance's object_info: %w", err)
	}
	w.mu.Lock()
	changed := w.nodes != list
	w.nodes, w.nodesAt, w.nodesStale = list, time.Now(), false
	w.mu.Unlock()
	if changed {
		w.log.Info("read the instance's node list", "classes", len(list.classes))
		w.d.changed()
	}
	return nil
}

// syncNodes reads the node list when the worker has none, or the instance
// may have changed since (it came back, or lacked a node it listed).
func (w *worker) syncNodes() {
	w.mu.Lock()
	need := w.nodes == nil || w.nodesStale
	w.mu.Unlock()
	if !need {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	if err := w.readNodes(ctx, 0); err != nil && w.ctx.Err() == nil {
		// Until it is read the instance may be given any job; one it
		// cannot run fails there as missing a node and goes elsewhere.
		w.log.Warn("could not read the instance's node list", "err", err)
	}
}

// nodesDoubtful has the node list read again: a job found a node or model
// missing that the list may have had.
func (w *worker) nodesDoubtful() {
	w.mu.Lock()
	w.nodesStale = true
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.syncNodes()
	}()
}

// nodeListOf parses an object_info, or returns the list of another
// instance that sent the same bytes.
func (d *Dispatcher) nodeListOf(raw []byte) (*nodeList, error) {
	sum := sha256.Sum256(raw)
	d.mu.Lock()
	var same *nodeList
	for _, w := range d.workers {
		w.mu.Lock()
		if w.nodes != nil && w.nodes.sum == sum {
			same = w.nodes
		}
		w.mu.Unlock()
	}
	for _, g := range d.gone {
		if g.nodes != nil && g.nodes.sum == sum {
			same = g.nodes
		}
	}
	d.mu.Unlock()
	if same != nil {
		return same, nil
	}
	classes, err := jsonobj.Parse(raw)
	if err != nil {
		return nil, err
	}
	has := make(map[string]bool, len(classes))
	for _, m := range classes {
		has[m.Key] = true
	}
	return &nodeList{raw: raw, classes: classes, has: has, sum: sum}, nil
}

// listed is an instance whose node list counts: connected, or away for
// less than the grace (it is expected back, with its jobs).
type listed struct {
	id      string
	version string
	taking  bool // takes jobs (or did when it went)
	up      bool // its socket is up now
	nodes   *nodeList
	w       *worker // nil when its agent is gone
}

// listedNow lists those instances: the ones taking jobs first, then the
// newest ComfyUI, then by id.
func (d *Dispatcher) listedNow() []listed {
	now := time.Now()
	within := func(lost time.Time) bool { return lost.IsZero() || now.Sub(lost) < d.cfg.Grace }
	var out []listed
	d.mu.Lock()
	for id, w := range d.workers {
		w.mu.Lock()
		l := listed{id: id, version: w.version, taking: !w.draining && !w.aside, up: w.connected, nodes: w.nodes, w: w}
		keep := w.connected || (w.nodes != nil && within(w.lostAt))
		w.mu.Unlock()
		if keep {
			out = append(out, l)
		}
	}
	for id, g := range d.gone {
		if g.nodes != nil && within(g.at) {
			out = append(out, listed{id: id, version: g.version, taking: g.taking, nodes: g.nodes})
		}
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b listed) int {
		if a.taking != b.taking {
			if a.taking {
				return -1
			}
			return 1
		}
		if c := compareVersions(a.version, b.version); c != 0 {
			return -c
		}
		return cmp.Compare(a.id, b.id)
	})
	return out
}

// nodeSets are the node classes of every listed instance whose list is
// known, by worker id, for the queue's routing.
func nodeSets(ins []listed) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(ins))
	for _, l := range ins {
		if l.nodes != nil {
			out[l.id] = l.nodes.has
		}
	}
	return out
}

// ObjectInfo is the node list participants see: every node class of the
// instances that take jobs (connected, or away for less than the grace;
// when none takes jobs, of those connected), so a class only an older
// instance has can be used too. A class several have comes as the first
// of them has it, in listedNow's order: the newest ComfyUI's definition.
// The first instance's classes come first, in its order and bytes (its
// object_info as sent, when it is the only one); the classes only others
// have follow, in theirs. With no instance there it is the last list
// served, kept on disk across restarts (Config.NodeListFile).
func (d *Dispatcher) ObjectInfo(ctx context.Context) ([]byte, error) {
	src := unionSources(d.listedNow())
	// The definitions served are the first instance's: read as fresh as
	// participants need them (the others' when they come, or fail a job).
	if len(src) > 0 && src[0].up {
		if err := src[0].w.readNodes(ctx, nodeFresh); err != nil {
			d.log.Warn("could not read a GPU instance's node list; serving the last one", "worker", src[0].id, "err", err)
		}
		src = unionSources(d.listedNow())
	}
	var lists []*nodeList
	var key []byte
	for _, l := range src {
		if l.nodes != nil && !slices.Contains(lists, l.nodes) {
			lists = append(lists, l.nodes)
			key = append(key, l.nodes.sum[:]...)
		}
	}
	d.nodesMu.Lock()
	defer d.nodesMu.Unlock()
	switch {
	case len(lists) == 0 && d.served == nil:
		return nil, ErrNoNodes
	case len(lists) == 0 || bytes.Equal(key, d.servedKey):
		return d.served, nil
	}
	raw := lists[0].raw
	if len(lists) > 1 {
		union, seen := slices.Clone(lists[0].classes), maps.Clone(lists[0].has)
		for _, l := range lists[1:] {
			for _, m := range l.classes {
				if !seen[m.Key] {
					union, seen[m.Key] = append(union, m), true
				}
			}
		}
		b, err := union.MarshalJSON()
		if err != nil {
			return nil, err
		}
		raw = b
	}
	if !bytes.Equal(raw, d.served) {
		d.saveNodes(raw)
	}
	d.served, d.servedKey = raw, key
	return raw, nil
}

// unionSources are the instances whose node lists make the union: those
// taking jobs, else those connected.
func unionSources(ins []listed) []listed {
	var taking, up []listed
	for _, l := range ins {
		if l.taking {
			taking = append(taking, l)
		}
		if l.up {
			up = append(up, l)
		}
	}
	if len(taking) > 0 {
		return taking
	}
	return up
}

// saveNodes keeps the node list served on disk, for a restart with no GPU
// host back yet. It is a cache: a failure is logged, and a torn file is
// not read back (loadNodes checks it). nodesMu held.
func (d *Dispatcher) saveNodes(raw []byte) {
	path := d.cfg.NodeListFile
	if path == "" {
		return
	}
	err := func() error {
		f, err := os.CreateTemp(filepath.Dir(path), ".object_info-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := f.Write(raw); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(f.Name(), path)
	}()
	if err != nil {
		d.log.Warn("could not keep the node list on disk", "file", path, "err", err)
	}
}

// loadNodes reads the node list served before a restart.
func (d *Dispatcher) loadNodes() {
	raw, err := os.ReadFile(d.cfg.NodeListFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		_, err = jsonobj.Parse(raw)
	}
	if err != nil {
		d.log.Warn("the node list kept on disk is unreadable; participants get one when a GPU host connects", "file", d.cfg.NodeListFile, "err", err)
		return
	}
	d.served = raw
}

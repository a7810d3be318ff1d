package mirror

import (
	"bytes"
	"compress/gzip"
	"container/list"
	"io"
	"strings"
	"sync"
	"time"
)

// entry is one upstream answer held in memory. Entries are never changed
// once built (a revalidation stores a copy), so a response can send their
// bytes without copying while the cache evicts or replaces them.
type entry struct {
	key    string
	status int

	contentType, disposition, language string
	location, origin                   string // a redirect's Location, and the upstream's scheme://host

	etag         string // the upstream's ETag, as sent
	lastModified string
	// ownETag is the ETag served: the upstream's, or a weak one made from
	// the bytes when the upstream sent none (so browsers still get 304s).
	ownETag string
	// gzipped says the upstream sent gz (its ETag tags gz, not plain).
	gzipped bool
	// encoding is a Content-Encoding other than gzip that the upstream
	// sent anyway; such an entry is passed on as is and never kept.
	encoding string

	gz       []byte // gzip representation, or nil
	plain    []byte // identity representation, valid when hasPlain
	hasPlain bool

	browserCC  string    // Cache-Control toward the browser
	maxAge     int       // the upstream's lifetime in seconds, for browserCC
	validated  time.Time // when the upstream last confirmed it
	freshUntil time.Time // serve without asking until then (zero: always ask)
	immutable  bool      // a content-hashed asset: never ask again
	size       int64
}

// entryOverhead approximates the bookkeeping bytes of one entry.
const entryOverhead = 512

func (e *entry) fresh(now time.Time) bool {
	return e.immutable || now.Before(e.freshUntil)
}

// cacheable says whether the entry may be stored: a 200 with an encoding
// the mirror understands, or a 404/410 (kept briefly).
func (e *entry) cacheable() bool {
	if e.encoding != "" {
		return false
	}
	return e.status == 200 || e.status == 404 || e.status == 410
}

// upstreamBytes is the body exactly as the upstream sent it.
func (e *entry) upstreamBytes() []byte {
	if e.gzipped {
		return e.gz
	}
	return e.plain
}

// etagFor is the ETag of the representation served: the upstream's strong
// tag only for its own bytes, a weak one for a re-encoding.
func (e *entry) etagFor(gz bool) string {
	if e.etag == "" || e.ownETag != e.etag {
		return e.ownETag
	}
	if gz == e.gzipped {
		return e.etag
	}
	return weaken(e.etag)
}

// body returns the identity bytes, decompressing when only gzip is held.
func (e *entry) body() ([]byte, error) {
	if e.hasPlain {
		return e.plain, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(e.gz))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func (e *entry) computeSize() {
	e.size = int64(len(e.gz)+len(e.plain)+len(e.key)+len(e.contentType)+len(e.etag)+
		len(e.ownETag)+len(e.lastModified)+len(e.disposition)) + entryOverhead
}

// lru is the in-memory cache: entries by key, least recently used first out
// once the total size passes max.
type lru struct {
	mu        sync.Mutex
	ll        list.List // of *entry, most recent at the front
	items     map[string]*list.Element
	bytes     int64
	max       int64
	evictions int64
	// disk, when set, follows every change, outside mu: at best effort, as
	// two changes to one key can reach it in either order.
	disk *disk
}

func newLRU(max int64) *lru {
	c := &lru{items: make(map[string]*list.Element), max: max}
	c.ll.Init()
	return c
}

func (c *lru) get(key string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil
	}
	c.ll.MoveToFront(el)
	return el.Value.(*entry)
}

// put stores e, replacing the entry under its key, and evicts from the
// back until the cache fits. An entry bigger than the whole cache is not
// stored (and whatever it replaces is dropped).
func (c *lru) put(e *entry) {
	c.mu.Lock()
	var gone []string
	if el, ok := c.items[e.key]; ok {
		c.removeLocked(el)
	}
	if e.size > c.max {
		gone = append(gone, e.key)
	} else {
		c.items[e.key] = c.ll.PushFront(e)
		c.bytes += e.size
	}
	for c.bytes > c.max {
		el := c.ll.Back()
		if el == nil {
			break
		}
		gone = append(gone, c.removeLocked(el))
		c.evictions++
	}
	c.mu.Unlock()
	if c.disk != nil {
		if e.size <= c.max {
			c.disk.save(e)
		}
		c.disk.remove(gone...)
	}
}

func (c *lru) removeLocked(el *list.Element) string {
	e := c.ll.Remove(el).(*entry)
	delete(c.items, e.key)
	c.bytes -= e.size
	return e.key
}

// removeWhere drops the entries whose keys match.
func (c *lru) removeWhere(match func(key string) bool) {
	c.mu.Lock()
	var gone []string
	for key, el := range c.items {
		if match(key) {
			gone = append(gone, c.removeLocked(el))
		}
	}
	c.mu.Unlock()
	if c.disk != nil {
		c.disk.remove(gone...)
	}
}

func (c *lru) remove(key string) {
	c.mu.Lock()
	el, ok := c.items[key]
	if ok {
		c.removeLocked(el)
	}
	c.mu.Unlock()
	if ok && c.disk != nil {
		c.disk.remove(key)
	}
}

// removePath drops the entry for path and every entry for path with a query.
func (c *lru) removePath(path string) {
	c.removeWhere(func(key string) bool {
		return key == path || strings.HasPrefix(key, path) && key[len(path)] == '?'
	})
}

func (c *lru) purge() { c.removeWhere(func(string) bool { return true }) }

func (c *lru) stats() (entries int, bytes, evictions int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes, c.evictions
}

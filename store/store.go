// Package store keeps ComfyUI Workshop's durable state in one bbolt file.
//
// Every write goes through a single writer goroutine that runs all writes
// queued while the previous commit was syncing in one transaction (group
// commit): a caller waits for exactly one fsync that its write is part of,
// and nobody waits for a timer.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	workshop "github.com/comfy-workshop/workshop"
)

// SchemaVersion is the layout of the bbolt file this build reads and writes.
// Open refuses a file written by a newer build rather than misread it, and
// migrates an older one (see migrate.go).
//
//  1. jobs, indexes by activity and participant, settings, seats, activity.
//  2. counters in meta, the finished index, the report's running totals.
//  3. graph parts (workflow, extra_data) apart from the job's record; the
//     per-participant index holds each job's status and times.
//  4. the per-participant index holds finished jobs only; the queue names
//     the active ones to a listing.
const SchemaVersion = 4

var (
	bucketMeta     = []byte("meta")
	bucketJobs     = []byte("jobs")      // job id -> job JSON, without its graph parts
	bucketGraphs   = []byte("graphs")    // job id -> its workflow and extra_data (putGraphs)
	bucketActive   = []byte("active")    // job id -> nothing: pending and running jobs
	bucketUserJobs = []byte("user_jobs") // user \x00 job id -> status and times (userEntry), finished jobs only
	bucketSettings = []byte("settings")  // name -> JSON value
	bucketServed   = []byte("served")    // user -> round-robin clock of their last dispatch
	bucketFinished = []byte("finished")  // status \x00 job id -> nothing: finished jobs by status

	keySchema = []byte("schema_version")
)

// maxBatch bounds one group commit so one huge batch does not delay the
// callers at its front for long.
const maxBatch = 2048

// DB is the store. Open one per data directory.
type DB struct {
	bolt *bolt.DB
	path string
	log  *slog.Logger

	writes chan *write
	lazy   chan *write
	// lazyQueued counts lazy writes queued and not yet committed, so that
	// Flush makes a commit only when there is one to make.
	lazyQueued atomic.Int64
	stop       chan struct{}
	done       chan struct{}

	closeOnce sync.Once
	closed    chan struct{}

	onCommit  atomic.Pointer[func(CommitStats)]
	writeTime time.Duration // bbolt's cumulative write time at the last commit (writer only)
}

// CommitStats describes one group commit, for metrics.
type CommitStats struct {
	Writes int           // writes in the batch (a retried batch reports each alone)
	Took   time.Duration // from the transaction's start to durable
	Disk   time.Duration // of which writing pages and fsyncing them
}

// slowCommit is when a commit is worth a warning: every submission queued
// meanwhile waited for it. It is nearly always the disk.
const slowCommit = 500 * time.Millisecond

// OnCommit sets fn to be called after every commit, in the writer: it
// must be quick.
func (db *DB) OnCommit(fn func(CommitStats)) { db.onCommit.Store(&fn) }

type write struct {
	fn   func(*Tx) error
	done chan error
	lazy bool
}

// initialMmapSize is 1 GiB on 64-bit systems; 32-bit ones keep bbolt's
// default, as their address space is small.
const initialMmapSize = (1 << 30) * (strconv.IntSize / 64)

// Open opens (creating if needed) the store in dir. The data directory must be
// writable; a clear error says so when it is not.
func Open(dir string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	db, err := open(dir, log)
	if err != nil {
		return nil, err
	}
	if free, size, worth := sparse(db.bolt); worth {
		log.Info("store is sparse: compacting it before serving", "mib_free", free>>20, "mib_file", size>>20)
		db.bolt.Close()
		if err := Compact(dir, log); err != nil {
			return nil, err
		}
		if db, err = open(dir, log); err != nil {
			return nil, err
		}
	}
	go db.writer()
	return db, nil
}

// open opens the bbolt file, brought to this build's schema.
func open(dir string, log *slog.Logger) (*DB, error) {
	path := filepath.Join(dir, "workshop.db")
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second, // another process holds the file: say so, don't hang
		// The freelist is written with every commit (one page or a few),
		// not rebuilt at open: rebuilding checks every page of the file,
		// seconds and the whole file in memory at a million jobs.
		FreelistType: bolt.FreelistMapType,
		// Map the first GiB at once (address space, not memory): growing
		// the map makes the writer wait for every open read transaction
		// while new ones wait for it, a stall that a workshop's store
		// would otherwise hit at each doubling.
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the file is locked by another running server", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db := &DB{
		bolt:   bdb,
		path:   path,
		log:    log,
		writes: make(chan *write, 4*maxBatch),
		lazy:   make(chan *write, 4*maxBatch),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	if err := db.init(); err != nil {
		bdb.Close()
		return nil, err
	}
	st := bdb.Stats()
	db.writeTime = st.TxStats.GetWriteTime() // a migration's is not a commit's
	return db, nil
}

var allBuckets = [][]byte{bucketMeta, bucketJobs, bucketGraphs, bucketActive, bucketUserJobs, bucketSettings, bucketServed,
	bucketSeats, bucketCodes, bucketSessions, bucketNotes, bucketActivity, bucketFinished, bucketReport}

func (db *DB) init() error {
	have := 0
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		// A file without jobs is new: it starts at this build's schema.
		fresh := tx.Bucket(bucketJobs) == nil
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil && fresh {
			have = SchemaVersion
			return meta.Put(keySchema, []byte(fmt.Sprint(SchemaVersion)))
		}
		have = 1 // files from before the version was written
		if v != nil {
			if _, err := fmt.Sscan(string(v), &have); err != nil {
				return fmt.Errorf("store %s: unreadable schema version %q", db.path, v)
			}
		}
		if have > SchemaVersion {
			return fmt.Errorf("store %s has schema version %d, newer than this build's %d: run the newer workshop binary", db.path, have, SchemaVersion)
		}
		return nil
	})
	if err != nil || have == SchemaVersion {
		return err
	}
	return db.migrate(have)
}

// Path is the bbolt file's path.
func (db *DB) Path() string { return db.path }

// Close stops the writer after the writes already queued, then closes the file.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() {
		close(db.stop)
		<-db.done
		close(db.closed)
		err = db.bolt.Close()
	})
	return err
}

// ErrClosed is returned for writes after Close.
var ErrClosed = workshop.Errorf(workshop.EUNAVAILABLE, "the store is shutting down")

// Write runs fn in a read-write transaction shared with other concurrent
// writes, and returns once that transaction is durably committed. fn may run
// more than once (when another write in its batch fails, each is retried
// alone), so it must only touch the transaction. An error from fn undoes fn's
// writes and is returned as is.
func (db *DB) Write(ctx context.Context, fn func(*Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	select {
	case db.writes <- w:
	case <-db.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the write will be committed or refused; wait for the verdict
	// even if ctx ends, so the caller never reports failure for a durable write.
	return <-w.done
}

// Enqueue queues fn like Write but returns at once with a channel that gets
// the verdict. Writes are committed in the order they were enqueued, which
// lets a caller order writes under its own lock without waiting for I/O there.
func (db *DB) Enqueue(fn func(*Tx) error) <-chan error {
	w := &write{fn: fn, done: make(chan error, 1)}
	select {
	case db.writes <- w:
	case <-db.stop:
		w.done <- ErrClosed
	}
	return w.done
}

// lazyDelay bounds how long a lazy write waits for a commit to join.
const lazyDelay = 100 * time.Millisecond

// Lazy queues fn to join the next commit instead of making one: it is
// committed with whatever is written next, or after lazyDelay when nothing
// is. Nobody waits for it, and a crash may lose the last lazyDelay of
// them: it is for records that nobody was promised (the activity log),
// which at a workshop's pace would otherwise add a commit, two fsyncs,
// for every entry. Lazy writes keep their order among themselves and go
// before the writes they join.
func (db *DB) Lazy(fn func(*Tx) error) {
	w := &write{fn: fn, done: make(chan error, 1), lazy: true}
	db.lazyQueued.Add(1) // before it is queued: Flush must not miss it
	select {
	case db.lazy <- w:
	case <-db.stop:
		db.lazyQueued.Add(-1)
	}
}

// Flush commits the lazy writes queued before it, for a reader that must
// see them (the activity log's list); with none queued it returns at once
// instead of making an empty commit, two fsyncs.
func (db *DB) Flush(ctx context.Context) error {
	if db.lazyQueued.Load() == 0 {
		return nil
	}
	return db.Write(ctx, func(*Tx) error { return nil })
}

func (db *DB) writer() {
	defer close(db.done)
	// Two batch buffers, swapped when lazy writes are put in front, so that
	// a batch never shares an array with the lazy list.
	batch, spare := make([]*write, 0, maxBatch), make([]*write, 0, maxBatch)
	var lazy []*write
	var due <-chan time.Time // when the oldest lazy write stops waiting
	for {
		batch = batch[:0]
		select {
		case w := <-db.writes:
			batch = append(batch, w)
		case w := <-db.lazy:
			lazy = append(lazy, w)
			if due == nil {
				due = time.After(lazyDelay)
			}
			continue
		case <-due:
		case <-db.stop:
			// Commit whatever is still queued, then refuse the rest.
			lazy = drain(db.lazy, lazy)
			if len(lazy) > 0 {
				db.commit(lazy)
			}
			for {
				select {
				case w := <-db.writes:
					db.commit([]*write{w})
				default:
					return
				}
			}
		}
		// Lazy writes go first: they were queued before the rest.
		if lazy = drain(db.lazy, lazy); len(lazy) > 0 {
			n := min(len(lazy), maxBatch/2)
			spare = append(append(spare[:0], lazy[:n]...), batch...)
			batch, spare = spare, batch
			lazy = append(lazy[:0], lazy[n:]...)
		}
		if due = nil; len(lazy) > 0 {
			due = time.After(lazyDelay)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case w := <-db.writes:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		db.commit(batch)
	}
}

// drain appends what is queued on c to ws without waiting.
func drain(c chan *write, ws []*write) []*write {
	for {
		select {
		case w := <-c:
			ws = append(ws, w)
		default:
			return ws
		}
	}
}

// batchError marks which write in a batch failed.
type batchError struct {
	index int
	err   error
}

func (e *batchError) Error() string { return e.err.Error() }

func (db *DB) commit(batch []*write) {
	began := time.Now()
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		tx := newTx(btx)
		for i, w := range batch {
			if err := w.fn(tx); err != nil {
				return &batchError{i, err}
			}
		}
		return tx.flush()
	})
	db.observe(len(batch), time.Since(began))
	var be *batchError
	if errors.As(err, &be) && len(batch) > 1 {
		// One write failed and took the batch down: retry each alone so only
		// the failing one sees its error.
		for _, w := range batch {
			db.commit([]*write{w})
		}
		return
	}
	if be != nil {
		err = be.err
	}
	if err != nil && !isCallerError(err) {
		db.log.Error("store commit failed", "err", err, "writes", len(batch))
	}
	for _, w := range batch {
		if w.lazy {
			db.lazyQueued.Add(-1)
		}
		w.done <- err
	}
}

// observe reports a commit that took took: to OnCommit's function, and to
// the log when it was slow.
func (db *DB) observe(writes int, took time.Duration) {
	st := db.bolt.Stats()
	wt := st.TxStats.GetWriteTime()
	disk := wt - db.writeTime
	db.writeTime = wt
	if took >= slowCommit {
		db.log.Warn("store commit slow: writes waited for it", "took", took.Round(time.Millisecond),
			"disk", disk.Round(time.Millisecond), "writes", writes)
	}
	if fn := db.onCommit.Load(); fn != nil {
		(*fn)(CommitStats{Writes: writes, Took: took, Disk: disk})
	}
}

func isCallerError(err error) bool {
	var e *workshop.Error
	return errors.As(err, &e)
}

// View runs fn in a read-only transaction. Keep it short: a long read
// transaction stops bbolt from reusing pages.
func (db *DB) View(fn func(*Tx) error) error {
	return db.bolt.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx}) })
}

// Tx is a transaction with the store's typed accessors.
type Tx struct {
	tx    *bolt.Tx
	count counters
}

// appendOnly are the buckets whose keys are time-ordered ids, so new keys
// go at the end: their pages are filled to 90% before they split, not
// bbolt's 50%, which for keys that only ever arrive in order leaves every
// page half empty for good.
var appendOnly = [][]byte{bucketJobs, bucketGraphs, bucketActivity, bucketFinished}

// newTx wraps a write transaction.
func newTx(btx *bolt.Tx) *Tx {
	for _, name := range appendOnly {
		if b := btx.Bucket(name); b != nil {
			b.FillPercent = 0.9
		}
	}
	return &Tx{tx: btx}
}

// Backup writes a consistent copy of the store to w while it serves: one
// read transaction, so writers are not blocked.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Check opens a store file read-only and reports its schema version, so a
// backup can be verified before it replaces a live store.
func Check(path string) (int, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("%s is not a workshop store: %w", path, err)
	}
	defer bdb.Close()
	var version int
	err = bdb.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketJobs, bucketActive} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%s is not a workshop store (no %s bucket)", path, b)
			}
		}
		_, err := fmt.Sscan(string(tx.Bucket(bucketMeta).Get(keySchema)), &version)
		return err
	})
	if err == nil && version > SchemaVersion {
		err = fmt.Errorf("%s has schema version %d, newer than this build's %d", path, version, SchemaVersion)
	}
	return version, err
}

package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	workshop "github.com/comfy-workshop/workshop"
)

// migrateChunk is how many jobs one migration transaction reads, so that
// migrating a large store never holds one huge transaction in memory.
const migrateChunk = 20000

// migrate brings a file of schema version from up to SchemaVersion, before
// the writer starts. Each step is rebuilt from scratch if an earlier
// attempt was interrupted, and the version is written last, in the
// transaction that completes it, so a crash mid-way leaves a file that the
// next start migrates again.
func (db *DB) migrate(from int) error {
	began := time.Now()
	if from < 2 {
		if err := db.migrateTo2(); err != nil {
			return fmt.Errorf("store %s: migrating to schema 2: %w", db.path, err)
		}
	}
	if from < 3 {
		if err := db.migrateTo3(); err != nil {
			return fmt.Errorf("store %s: migrating to schema 3: %w", db.path, err)
		}
	}
	if from < 4 {
		if err := db.migrateTo4(); err != nil {
			return fmt.Errorf("store %s: migrating to schema 4: %w", db.path, err)
		}
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		db.log.Info("store migrated", "from", from, "to", SchemaVersion, "took", time.Since(began).Round(time.Millisecond))
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(fmt.Sprint(SchemaVersion)))
	})
}

// migrateTo2 builds what schema 2 adds from every stored job: the status
// counters, the finished index and the report's totals; and counts the
// activity log once.
func (db *DB) migrateTo2() error {
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		for _, b := range [][]byte{bucketFinished, bucketReport} {
			if err := btx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := btx.CreateBucket(b); err != nil {
				return err
			}
		}
		tx := newTx(btx)
		tx.count.loaded, tx.count.dirty = true, true
		tx.count.activity = uint64(btx.Bucket(bucketActivity).Stats().KeyN) // once, here only
		return tx.flush()
	})
	if err != nil {
		return err
	}
	return db.eachJobInChunks(0, func(tx *Tx, _ []byte, j *workshop.Job) (int, error) {
		tx.countJob("", j.Status)
		if j.Status.Finished() {
			if err := tx.tx.Bucket(bucketFinished).Put(finishedKey(j.Status, j.ID), nil); err != nil {
				return 0, err
			}
			if err := tx.reportJob(j, 1); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}, (*Tx).flush)
}

// eachJobInChunks calls fn with every stored job, in key order, in write
// transactions of at most migrateChunk jobs or, if maxBytes > 0, of jobs
// whose sizes (as fn returns them) add up to maxBytes; end, if not nil,
// closes each transaction.
func (db *DB) eachJobInChunks(maxBytes int, fn func(tx *Tx, key []byte, j *workshop.Job) (int, error), end func(*Tx) error) error {
	var after []byte
	for done := false; !done; {
		err := db.bolt.Update(func(btx *bolt.Tx) error {
			tx := newTx(btx)
			c := btx.Bucket(bucketJobs).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			size := 0
			for n := 0; n < migrateChunk && (maxBytes <= 0 || size < maxBytes); n++ {
				if k == nil {
					done = true
					break
				}
				after = append(after[:0], k...)
				j, err := decodeJobSummary(v)
				if err != nil {
					return err
				}
				moved, err := fn(tx, k, j)
				if err != nil {
					return err
				}
				size += moved
				// fn may have written to the bucket, which the cursor
				// may not survive: find the next key anew.
				if k, v = c.Seek(after); k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			if end != nil {
				return end(tx)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// migrateChunkBytes bounds the graph bytes one schema-3 migration
// transaction moves, as a Flux job's graph alone is 100 KB or more.
const migrateChunkBytes = 64 << 20

// migrateTo3 moves every job's graph parts out of its record into the
// graphs bucket and writes its entry in the participant's index. A job
// already moved is only given its entry again, so an interrupted migration
// can run again from the start.
func (db *DB) migrateTo3() error {
	return db.eachJobInChunks(migrateChunkBytes, func(tx *Tx, k []byte, j *workshop.Job) (int, error) {
		moved := 0
		if len(j.Workflow) > 0 || len(j.ExtraData) > 0 {
			moved = len(j.Workflow) + len(j.ExtraData)
			if err := tx.putGraphs(j); err != nil {
				return 0, err
			}
			rec, err := encodeJob(j)
			if err != nil {
				return 0, err
			}
			if err := tx.tx.Bucket(bucketJobs).Put(k, rec); err != nil {
				return 0, err
			}
		}
		if !j.Status.Finished() {
			return moved, nil // schema 4: the index holds finished jobs only
		}
		return moved, tx.tx.Bucket(bucketUserJobs).Put(userJobKey(j.UserID, j.ID), userEntry(j))
	}, nil)
}

// migrateTo4 takes the active jobs out of their participants' index,
// which from schema 4 holds finished jobs only (indexUserJob). The active
// jobs are few (a queue's worth), so one transaction does.
func (db *DB) migrateTo4() error {
	return db.bolt.Update(func(btx *bolt.Tx) error {
		jobs, index := btx.Bucket(bucketJobs), btx.Bucket(bucketUserJobs)
		return btx.Bucket(bucketActive).ForEach(func(id, _ []byte) error {
			v := jobs.Get(id)
			if v == nil {
				return nil
			}
			j, err := decodeJobSummary(v)
			if err != nil {
				return err
			}
			return index.Delete(userJobKey(j.UserID, j.ID))
		})
	})
}

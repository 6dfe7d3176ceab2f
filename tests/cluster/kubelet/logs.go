package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"time"
)

type logOptions struct {
	follow     bool
	timestamps bool
	tailLines  int64 // <0: all
	limitBytes int64 // <=0: no limit
	since      time.Time
	stream     string // "", "stdout" or "stderr"
}

// limitedWriter stops the copy once limit bytes were written.
type limitedWriter struct {
	w     io.Writer
	limit int64 // <=0: none
	n     int64
}

var errLimitReached = io.ErrShortWrite

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.limit > 0 {
		left := l.limit - l.n
		if left <= 0 {
			return 0, errLimitReached
		}
		if int64(len(p)) > left {
			n, err := l.w.Write(p[:left])
			l.n += int64(n)
			if err == nil {
				err = errLimitReached
			}
			return n, err
		}
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

func (o logOptions) wants(rec logRecord) bool {
	if o.stream != "" && rec.stream != o.stream {
		return false
	}
	if !o.since.IsZero() && rec.ts.Before(o.since) {
		return false
	}
	return true
}

// writeLogs renders the CRI log file at path to w. With follow, it keeps
// reading until done is closed (the run ended) and the file is drained, or
// ctx ends.
func writeLogs(ctx context.Context, path string, opts logOptions, done <-chan struct{}, w io.Writer, flush func()) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lw := &limitedWriter{w: w, limit: opts.limitBytes}
	atLineStart := map[string]bool{"stdout": true, "stderr": true}

	emit := func(rec logRecord) error {
		if opts.timestamps && atLineStart[rec.stream] {
			if _, err := lw.Write([]byte(rec.rawTS + " ")); err != nil {
				return err
			}
		}
		if _, err := lw.Write(rec.content); err != nil {
			return err
		}
		atLineStart[rec.stream] = !rec.partial
		if !rec.partial {
			if _, err := lw.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
		return nil
	}

	reader := bufio.NewReaderSize(f, 64*1024)
	var pending []byte // an incomplete record at the end of the file
	readRecords := func(fn func(logRecord) error) error {
		for {
			line, err := reader.ReadBytes('\n')
			if len(line) > 0 {
				if line[len(line)-1] != '\n' {
					pending = append(pending, line...)
				} else {
					full := line[:len(line)-1]
					if len(pending) > 0 {
						full = append(pending, full...)
						pending = nil
					}
					if rec, ok := parseLogRecord(full); ok && opts.wants(rec) {
						if err := fn(rec); err != nil {
							return err
						}
					}
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}

	// First the existing content, honouring tailLines.
	if opts.tailLines >= 0 {
		var recs []logRecord
		if err := readRecords(func(rec logRecord) error {
			recs = append(recs, rec)
			return nil
		}); err != nil {
			return err
		}
		start := len(recs)
		lines := int64(0)
		for start > 0 {
			r := recs[start-1]
			if !r.partial {
				if lines == opts.tailLines {
					break
				}
				lines++
			}
			start--
		}
		// a trailing partial record belongs to the line being written; keep it
		for _, rec := range recs[start:] {
			if err := emit(rec); err != nil {
				return ignoreLimit(err)
			}
		}
	} else if err := readRecords(emit); err != nil {
		return ignoreLimit(err)
	}
	if flush != nil {
		flush()
	}
	if !opts.follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		finished := false
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			finished = true
		case <-tick.C:
		}
		before := lw.n
		if err := readRecords(emit); err != nil {
			return ignoreLimit(err)
		}
		if lw.n != before && flush != nil {
			flush()
		}
		if finished {
			return nil
		}
	}
}

func ignoreLimit(err error) error {
	if err == errLimitReached {
		return nil
	}
	return err
}

// lastLines returns up to n final lines of a CRI log file (for termination
// messages).
func lastLines(path string, n int, maxBytes int) string {
	var buf bytes.Buffer
	_ = writeLogs(context.Background(), path, logOptions{tailLines: int64(n), limitBytes: -1}, nil, &buf, nil)
	b := buf.Bytes()
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	return string(b)
}

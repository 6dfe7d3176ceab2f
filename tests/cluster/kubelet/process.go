package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// containerRun is one run of a container: one local process (and its process
// group). A restart is a new containerRun.
type containerRun struct {
	id        string
	pid       int
	startedAt time.Time
	logPath   string

	stdinMu       sync.Mutex
	stdin         *os.File // write end of the process's stdin; nil without stdin: true
	stdinOnceUsed bool

	hub *outputHub

	done       chan struct{} // closed when the process has exited and its output is drained
	exitCode   int
	signal     syscall.Signal
	finishedAt time.Time
	startErr   error
}

type runSpec struct {
	argv    []string
	env     []string
	dir     string
	stdin   bool
	logPath string
	id      string
	// wrap, when set, turns the resolved command into what is started
	// (a sandboxed pod's processes start through the kubelet's `_enter`)
	wrap func(path string, argv []string) (string, []string, *syscall.SysProcAttr, error)
}

// startRun starts the process. Its stdout and stderr go to the log file (CRI
// log format) and to whoever is attached.
func startRun(spec runSpec) (*containerRun, error) {
	if len(spec.argv) == 0 {
		return nil, errors.New("no command to run")
	}
	path, err := lookPath(spec.argv[0], spec.env, spec.dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(spec.logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(spec.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		logFile.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	closeAll := func(fs ...*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}

	cmd := exec.Command(path, spec.argv[1:]...)
	cmd.Args[0] = spec.argv[0]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.wrap != nil {
		self, args, attr, err := spec.wrap(path, spec.argv)
		if err != nil {
			closeAll(logFile, outR, outW, errR, errW)
			return nil, err
		}
		cmd = exec.Command(self, args[1:]...)
		cmd.Args[0] = args[0]
		cmd.SysProcAttr = attr
	}
	cmd.Env = spec.env
	cmd.Dir = spec.dir
	cmd.Stdout = outW
	cmd.Stderr = errW
	var stdinR, stdinW *os.File
	if spec.stdin {
		stdinR, stdinW, err = os.Pipe()
		if err != nil {
			closeAll(logFile, outR, outW, errR, errW)
			return nil, err
		}
		cmd.Stdin = stdinR
	}
	if err := startTracked(cmd); err != nil {
		closeAll(logFile, outR, outW, errR, errW, stdinR, stdinW)
		return nil, err
	}
	closeAll(outW, errW, stdinR)

	r := &containerRun{
		id:        spec.id,
		pid:       cmd.Process.Pid,
		startedAt: time.Now(),
		logPath:   spec.logPath,
		stdin:     stdinW,
		hub:       newOutputHub(newCRILogWriter(logFile)),
		done:      make(chan struct{}),
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); r.hub.pump(outR, streamStdout) }()
	go func() { defer readers.Done(); r.hub.pump(errR, streamStderr) }()
	go func() {
		waitErr := cmd.Wait()
		untrack(r.pid)
		r.finishedAt = time.Now()
		if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			switch {
			case st.Exited():
				r.exitCode = st.ExitStatus()
			case st.Signaled():
				r.signal = st.Signal()
				r.exitCode = 128 + int(st.Signal())
			}
		} else if waitErr != nil {
			r.exitCode = 1
		}
		// The rest of the process group goes with the process, and so does
		// whatever else the run started (as a container's cgroup would).
		_ = syscall.Kill(-r.pid, syscall.SIGKILL)
		killEnvMarked(containerEnv, r.id)
		// Drain the output (children that escaped the group may still hold
		// the pipes: do not wait for them forever).
		drained := make(chan struct{})
		go func() { readers.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
			outR.Close()
			errR.Close()
		}
		r.stdinMu.Lock()
		if r.stdin != nil {
			r.stdin.Close()
			r.stdin = nil
		}
		r.stdinMu.Unlock()
		r.hub.close()
		logFile.Close()
		close(r.done)
	}()
	return r, nil
}

func (r *containerRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (r *containerRun) stop(grace time.Duration) {
	if r.exited() {
		return
	}
	_ = syscall.Kill(-r.pid, syscall.SIGTERM)
	select {
	case <-r.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-r.pid, syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		klog.InfoS("Process did not exit after SIGKILL", "pid", r.pid)
	}
}

func (r *containerRun) writeStdin(p []byte) error {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin == nil {
		return io.ErrClosedPipe
	}
	_, err := r.stdin.Write(p)
	return err
}

func (r *containerRun) closeStdin() {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin != nil {
		r.stdin.Close()
		r.stdin = nil
	}
}

// lookPath resolves a command like a shell would, using the PATH of the
// container's environment when it has one.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("exec: %q: not an executable file", name)
		}
		return p, nil
	}
	pathVar := os.Getenv("PATH")
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			pathVar = kv[len("PATH="):]
		}
	}
	for _, d := range filepath.SplitList(pathVar) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// ---- output: log file + attached clients ----

type streamKind int

const (
	streamStdout streamKind = iota
	streamStderr
)

func (s streamKind) String() string {
	if s == streamStderr {
		return "stderr"
	}
	return "stdout"
}

type chunk struct {
	stream streamKind
	data   []byte
}

// outputHub copies a process's output to its log and to attached clients.
// Each client has its own queue, so a slow client never blocks the process;
// a client whose queue overflows is disconnected.
type outputHub struct {
	mu     sync.Mutex
	log    *criLogWriter
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	out, err io.Writer // nil: that stream is not wanted
	queue    chan chunk
	gone     chan struct{} // closed when the client can no longer be written to
	once     sync.Once
}

func newOutputHub(log *criLogWriter) *outputHub {
	return &outputHub{log: log, subs: map[*subscriber]struct{}{}}
}

func (h *outputHub) pump(r io.ReadCloser, stream streamKind) {
	defer r.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			h.mu.Lock()
			h.log.write(stream, data)
			for s := range h.subs {
				select {
				case s.queue <- chunk{stream, data}:
				default:
					klog.InfoS("Attached client too slow, disconnecting it")
					s.finish()
					delete(h.subs, s)
				}
			}
			h.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// subscribe attaches a client. The returned subscriber's gone channel closes
// when the client fails or the output ends (after everything queued was
// written).
func (h *outputHub) subscribe(out, errw io.Writer) *subscriber {
	s := &subscriber{out: out, err: errw, queue: make(chan chunk, 4096), gone: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.queue)
	} else {
		h.subs[s] = struct{}{}
		h.mu.Unlock()
	}
	go func() {
		defer s.once.Do(func() { close(s.gone) })
		for c := range s.queue {
			w := s.out
			if c.stream == streamStderr {
				w = s.err
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(c.data); err != nil {
				h.unsubscribe(s)
				// keep draining so close() never blocks on this queue
				for range s.queue {
				}
				return
			}
		}
	}()
	return s
}

func (s *subscriber) finish() { close(s.queue) }

func (h *outputHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		s.finish()
	}
}

func (h *outputHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log.flush()
	h.closed = true
	for s := range h.subs {
		s.finish()
		delete(h.subs, s)
	}
}

// ---- CRI log format ----
//
// Each log record is one line: "<RFC3339Nano> <stream> <F|P> <content>\n".
// "F" ends a line of the program's output, "P" is a part of a line that was
// written without its newline.

type criLogWriter struct {
	f *os.File
	w *bufio.Writer
}

func newCRILogWriter(f *os.File) *criLogWriter {
	return &criLogWriter{f: f, w: bufio.NewWriterSize(f, 64*1024)}
}

func (l *criLogWriter) write(stream streamKind, data []byte) {
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for len(data) > 0 {
		i := indexByte(data, '\n')
		tag, line := "P", data
		if i >= 0 {
			tag, line, data = "F", data[:i], data[i+1:]
		} else {
			data = nil
		}
		l.w.WriteString(ts)
		l.w.WriteByte(' ')
		l.w.WriteString(stream.String())
		l.w.WriteByte(' ')
		l.w.WriteString(tag)
		l.w.WriteByte(' ')
		l.w.Write(line)
		l.w.WriteByte('\n')
	}
	l.flush()
}

func (l *criLogWriter) flush() { _ = l.w.Flush() }

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

type logRecord struct {
	ts      time.Time
	rawTS   string
	stream  string
	partial bool
	content []byte
}

func parseLogRecord(line []byte) (logRecord, bool) {
	// line has no trailing newline
	parts := strings.SplitN(string(line), " ", 4)
	if len(parts) < 3 {
		return logRecord{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return logRecord{}, false
	}
	rec := logRecord{ts: ts, rawTS: parts[0], stream: parts[1], partial: parts[2] == "P"}
	if len(parts) == 4 {
		rec.content = []byte(parts[3])
	}
	return rec, true
}

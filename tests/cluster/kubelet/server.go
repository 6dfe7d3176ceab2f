package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"
)

const (
	// As the kubelet's defaults: an idle stream (an MCP session may sit idle
	// for a long time) is closed after 4 hours.
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// serveAPI serves the kubelet API over HTTPS. Only clients with a
// certificate signed by --client-ca-file (the API server) are served.
func (k *kubelet) serveAPI() (*http.Server, error) {
	caPEM, err := os.ReadFile(k.cfg.clientCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", k.cfg.clientCA)
	}
	cert, err := tls.LoadX509KeyPair(k.cfg.tlsCert, k.cfg.tlsKey)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/pods", k.handlePods)
	mux.HandleFunc("/exec/", k.handleExec)
	mux.HandleFunc("/attach/", k.handleAttach)
	mux.HandleFunc("/portForward/", k.handlePortForward)
	mux.HandleFunc("/containerLogs/", k.handleLogs)

	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		},
		// HTTP/1.1 only: streams are upgraded connections.
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(k.cfg.address, strconv.Itoa(k.cfg.port)))
	if err != nil {
		return nil, err
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Kubelet API server stopped")
			os.Exit(1)
		}
	}()
	return srv, nil
}

// pathParts splits "/<prefix>/a/b/c" into [a b c].
func pathParts(path, prefix string) []string {
	rest := strings.Trim(strings.TrimPrefix(path, prefix), "/")
	if rest == "" {
		return nil
	}
	return strings.Split(rest, "/")
}

func (k *kubelet) handlePods(w http.ResponseWriter, _ *http.Request) {
	list := v1.PodList{}
	for _, pw := range k.allWorkers() {
		list.Items = append(list.Items, *pw.currentPod())
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// target parses "{ns}/{pod}/{container}" or "{ns}/{pod}/{uid}/{container}".
func (k *kubelet) target(w http.ResponseWriter, r *http.Request, prefix string) (*podWorker, string, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil, "", false
	}
	parts := pathParts(r.URL.Path, prefix)
	var ns, name, uid, container string
	switch len(parts) {
	case 3:
		ns, name, container = parts[0], parts[1], parts[2]
	case 4:
		ns, name, uid, container = parts[0], parts[1], parts[2], parts[3]
	default:
		http.Error(w, "not found", http.StatusNotFound)
		return nil, "", false
	}
	pw := k.findPod(ns, name, uid)
	if pw == nil {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return nil, "", false
	}
	return pw, container, true
}

// ---- exec ----

type execer struct {
	pw   *podWorker
	opts *remotecommandserver.Options
}

func (k *kubelet) handleExec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pw, container, ok := k.target(w, r, "/exec/")
	if !ok {
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	if _, _, err := pw.runningContainer(container); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := pw.currentPod()
	remotecommandserver.ServeExec(w, r, &execer{pw: pw, opts: opts}, pod.Name, string(pod.UID), container, cmd,
		opts, streamIdleTimeout, streamCreationTimeout, remotecommandserver.SupportedStreamingProtocols)
}

// ExecInContainer runs cmd as a local process in the container's directory
// and environment.
func (e *execer) ExecInContainer(ctx context.Context, _, _, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommandserver.TerminalSize, timeout time.Duration) error {
	_, st, err := e.pw.runningContainer(container)
	if err != nil {
		return err
	}
	c, err := e.pw.command(st, cmd)
	if err != nil {
		return err
	}
	c.WaitDelay = 2 * time.Second
	if e.opts.Stdout && out != nil {
		c.Stdout = out
	}
	if e.opts.Stderr && errw != nil && !tty {
		c.Stderr = errw
	} else if tty && c.Stdout != nil {
		c.Stderr = c.Stdout
	}
	// stdin goes through a pipe that we own: the client's stream may never
	// end, and Wait must not wait for it.
	var stdinW *os.File
	if e.opts.Stdin && in != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		c.Stdin = r
		stdinW = w
		defer r.Close()
	}
	if err := startTracked(c); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return err
	}
	pgid := c.Process.Pid
	e.pw.addExec(pgid)
	defer e.pw.removeExec(pgid)
	if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, in)
			stdinW.Close()
		}()
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		var expire <-chan time.Time
		if timeout > 0 {
			expire = time.After(timeout)
		}
		select {
		case <-ctx.Done():
		case <-expire:
		case <-stop:
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}()
	err = c.Wait()
	untrack(pgid)
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // leftovers of the session
	if stdinW != nil {
		stdinW.Close()
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if code < 0 {
			code = 128 + int(exitErr.Sys().(syscall.WaitStatus).Signal())
		}
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

// ---- attach ----

type attacher struct {
	pw   *podWorker
	opts *remotecommandserver.Options
}

func (k *kubelet) handleAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pw, container, ok := k.target(w, r, "/attach/")
	if !ok {
		return
	}
	if _, _, err := pw.runningContainer(container); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := pw.currentPod()
	remotecommandserver.ServeAttach(w, r, &attacher{pw: pw, opts: opts}, pod.Name, string(pod.UID), container,
		opts, streamIdleTimeout, streamCreationTimeout, remotecommandserver.SupportedStreamingProtocols)
}

// AttachContainer connects the client to the running process: its input goes
// to the process's stdin, the process's output (from now on) to the client.
// It returns when the process exits, the client goes away, or the client
// closes its stdin.
func (a *attacher) AttachContainer(ctx context.Context, _, _, container string, in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommandserver.TerminalSize) error {
	run, st, err := a.pw.runningContainer(container)
	if err != nil {
		return err
	}
	var o, e io.Writer
	if a.opts.Stdout && out != nil {
		o = out
	}
	if a.opts.Stderr && errw != nil && !tty {
		e = errw
	} else if tty {
		e = o
	}
	sub := run.hub.subscribe(o, e)
	defer run.hub.unsubscribe(sub)

	stdinDone := make(chan struct{})
	if a.opts.Stdin && in != nil && st.spec.Stdin {
		go func() {
			defer close(stdinDone)
			buf := make([]byte, 32*1024)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					if werr := run.writeStdin(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	} else {
		stdinDone = nil // never fires
	}

	waitOutput := func() {
		select {
		case <-sub.gone:
		case <-time.After(2 * time.Second):
		}
	}
	select {
	case <-run.done:
		waitOutput()
	case <-sub.gone:
	case <-ctx.Done():
	case <-stdinDone:
		if st.spec.StdinOnce && !tty {
			// the one session that owned stdin is over: the process sees EOF
			run.closeStdin()
			select {
			case <-run.done:
				waitOutput()
			case <-sub.gone:
			case <-ctx.Done():
			}
		} else {
			// give output already on its way a moment to arrive
			select {
			case <-run.done:
				waitOutput()
			case <-sub.gone:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// ---- port-forward ----

type portForwarder struct{ k *kubelet }

func (k *kubelet) handlePortForward(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := pathParts(r.URL.Path, "/portForward/")
	if len(parts) != 2 && len(parts) != 3 {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	uid := ""
	if len(parts) == 3 {
		uid = parts[2]
	}
	pw := k.findPod(parts[0], parts[1], uid)
	if pw == nil {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := pw.currentPod()
	portforward.ServePortForward(w, r, &portForwarder{k: k}, pod.Name, string(pod.UID), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// PortForward connects the stream to the port on the pod's address.
func (p *portForwarder) PortForward(ctx context.Context, _, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	ip := p.k.cfg.address
	if pw := p.k.findUID(uid); pw != nil {
		ip = pw.podIP()
	}
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp",
		net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("failed to connect to %s:%d: %w", ip, port, err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, err = io.Copy(stream, conn)
	stream.Close()
	conn.Close()
	wg.Wait()
	return nil
}

// ---- containerLogs ----

func (k *kubelet) handleLogs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := pathParts(r.URL.Path, "/containerLogs/")
	if len(parts) != 3 {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	pw := k.findPod(parts[0], parts[1], "")
	if pw == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s not found", parts[0], parts[1]), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	opts := logOptions{tailLines: -1}
	opts.follow = q.Get("follow") == "true"
	opts.timestamps = q.Get("timestamps") == "true"
	previous := q.Get("previous") == "true"
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "invalid tailLines", http.StatusBadRequest)
			return
		}
		opts.tailLines = n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			http.Error(w, "invalid limitBytes", http.StatusBadRequest)
			return
		}
		opts.limitBytes = n
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			http.Error(w, "invalid sinceSeconds", http.StatusBadRequest)
			return
		}
		opts.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, "invalid sinceTime", http.StatusBadRequest)
			return
		}
		opts.since = t
	}
	switch strings.ToLower(q.Get("stream")) {
	case "stdout":
		opts.stream = "stdout"
	case "stderr":
		opts.stream = "stderr"
	}

	path, done, err := pw.logTarget(parts[2], previous)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if path == "" {
		return
	}
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	if err := writeLogs(r.Context(), path, opts, done, w, flush); err != nil {
		klog.V(2).InfoS("Writing logs", "err", err)
	}
}

// logTarget finds the log file of a container's current (or previous) run,
// and a channel closed when that run is over.
func (w *podWorker) logTarget(name string, previous bool) (string, <-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := w.currentPod()
	st := w.containerState(name)
	if st == nil {
		return "", nil, fmt.Errorf("container %s is not valid for pod %s", name, pod.Name)
	}
	closed := make(chan struct{})
	close(closed)
	if previous {
		// the run that lastState.terminated describes
		switch {
		case st.current != nil && st.waitReason == "CrashLoopBackOff" && st.run != nil:
			return st.run.logPath, closed, nil
		case st.current == nil && st.last != nil && st.prevLog != "":
			return st.prevLog, closed, nil
		}
		return "", nil, fmt.Errorf("previous terminated container %q in pod %q not found", name, pod.Name)
	}
	if st.run == nil && st.current != nil {
		return "", closed, nil // it failed to start: no output
	}
	if st.run == nil {
		reason := st.waitReason
		if reason == "" {
			reason = "ContainerCreating"
		}
		return "", nil, fmt.Errorf("container %q in pod %q is waiting to start: %s", name, pod.Name, reason)
	}
	return st.run.logPath, st.run.done, nil
}

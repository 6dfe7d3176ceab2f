package main

// Probes (startup, readiness, liveness: httpGet, tcpSocket, exec; grpc is
// checked as tcpSocket) and preStop hooks (exec, httpGet, sleep), as the
// kubelet runs them: a container with a readiness probe is Ready only after
// successThreshold successes and until failureThreshold failures; liveness
// and readiness wait for the startup probe; a failed startup or liveness probe
// restarts the container.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
)

func orDefault(v, d int32) int32 {
	if v <= 0 {
		return d
	}
	return v
}

func seconds(n int32) time.Duration { return time.Duration(n) * time.Second }

// podIP is the pod's address (what probes and port-forwards dial).
func (w *podWorker) podIP() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sb != nil {
		return w.sb.ip.String()
	}
	return w.k.cfg.address
}

type probeRun struct {
	p          *v1.Probe
	kind       string
	next       time.Time
	succ, fail int32
}

// probeLoop runs a container run's probes until the run ends.
func (w *podWorker) probeLoop(st *ctrState, run *containerRun) {
	c := st.spec
	start := time.Now()
	mk := func(p *v1.Probe, kind string) *probeRun {
		if p == nil {
			return nil
		}
		return &probeRun{p: p, kind: kind, next: start.Add(seconds(p.InitialDelaySeconds))}
	}
	startup, readiness, liveness := mk(c.StartupProbe, "Startup"), mk(c.ReadinessProbe, "Readiness"), mk(c.LivenessProbe, "Liveness")
	if startup == nil && readiness == nil && liveness == nil {
		return
	}
	started := startup == nil
	set := func(started, ready bool) {
		w.mu.Lock()
		changed := st.run == run && (st.started != started || st.ready != ready)
		if st.run == run {
			st.started, st.ready = started, ready
		}
		w.mu.Unlock()
		if changed {
			w.poke()
		}
	}
	ready := false
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		for _, pr := range []*probeRun{startup, readiness, liveness} {
			if pr == nil || (pr == startup) == started {
				continue // before the startup probe passed only it runs; after, never again
			}
			if pr != readiness && w.deleting.Load() {
				continue // a terminating pod is not restarted
			}
			if now.Before(pr.next) {
				if pr.next.Before(next) {
					next = pr.next
				}
				continue
			}
			ok, msg := w.probe(pr.p, st, run)
			pr.next = time.Now().Add(seconds(orDefault(pr.p.PeriodSeconds, 10)))
			if pr.next.Before(next) {
				next = pr.next
			}
			if ok {
				pr.succ++
				pr.fail = 0
			} else {
				pr.fail++
				pr.succ = 0
				w.k.recorder.Eventf(w.currentPod(), v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", pr.kind, msg)
			}
			failed := !ok && pr.fail >= orDefault(pr.p.FailureThreshold, 3)
			switch pr {
			case startup:
				if ok {
					started = true
					if readiness == nil {
						ready = true
					}
					set(true, ready)
				} else if failed {
					w.restartUnhealthy(st, run, "startup")
					return
				}
			case readiness:
				if ok && pr.succ >= orDefault(pr.p.SuccessThreshold, 1) {
					ready = true
				} else if failed {
					ready = false
				}
				set(started, ready)
			case liveness:
				if failed {
					w.restartUnhealthy(st, run, "liveness")
					return
				}
			}
		}
		select {
		case <-run.done:
			return
		case <-time.After(time.Until(next)):
		}
	}
}

func (w *podWorker) restartUnhealthy(st *ctrState, run *containerRun, kind string) {
	pod := w.currentPod()
	klog.InfoS("Container failed its probe, restarting it", "pod", klog.KObj(pod), "container", st.spec.Name, "probe", kind)
	w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", st.spec.Name, kind)
	go run.stop(w.grace())
}

// probe runs one probe once.
func (w *podWorker) probe(p *v1.Probe, st *ctrState, run *containerRun) (bool, string) {
	timeout := seconds(orDefault(p.TimeoutSeconds, 1))
	host := w.podIP()
	switch {
	case p.HTTPGet != nil:
		return httpCheck(p.HTTPGet, st, host, timeout)
	case p.TCPSocket != nil:
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		port, err := resolvePort(p.TCPSocket.Port, &st.spec)
		if err != nil {
			return false, err.Error()
		}
		return tcpCheck(host, port, timeout)
	case p.GRPC != nil:
		return tcpCheck(host, int(p.GRPC.Port), timeout)
	case p.Exec != nil:
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := w.runIn(ctx, st, p.Exec.Command)
		if err != nil {
			return false, fmt.Sprintf("%v: %s", err, strings.TrimSpace(out))
		}
		return true, ""
	}
	return true, ""
}

func resolvePort(port intstr.IntOrString, c *v1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q in container %s", port.StrVal, c.Name)
}

func tcpCheck(host string, port int, timeout time.Duration) (bool, string) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), timeout)
	if err != nil {
		return false, err.Error()
	}
	c.Close()
	return true, ""
}

func httpCheck(g *v1.HTTPGetAction, st *ctrState, host string, timeout time.Duration) (bool, string) {
	port, err := resolvePort(g.Port, &st.spec)
	if err != nil {
		return false, err.Error()
	}
	if g.Host != "" {
		host = g.Host
	}
	scheme := "http"
	if g.Scheme == v1.URISchemeHTTPS {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/mcpctl-test")
	for _, h := range g.HTTPHeaders {
		req.Header.Set(h.Name, h.Value)
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet's probes
			DisableKeepAlives: true,
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// preStop runs a container's preStop hook, bounded by ctx.
func (w *podWorker) preStop(ctx context.Context, st *ctrState) {
	lc := st.spec.Lifecycle
	if lc == nil || lc.PreStop == nil {
		return
	}
	h := lc.PreStop
	pod := w.currentPod()
	var err error
	switch {
	case h.Exec != nil:
		var out string
		out, err = w.runIn(ctx, st, h.Exec.Command)
		if err != nil {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
	case h.HTTPGet != nil:
		if ok, msg := httpCheck(h.HTTPGet, st, w.podIP(), 10*time.Second); !ok {
			err = fmt.Errorf("%s", msg)
		}
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(seconds(int32(h.Sleep.Seconds))):
		}
	}
	if err != nil && ctx.Err() == nil {
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
	}
}

// command builds a process in a container's context: its environment and
// directory, and its pod's sandbox when it has one.
func (w *podWorker) command(st *ctrState, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command")
	}
	path, err := lookPath(argv[0], st.env, w.dir)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	var c *exec.Cmd
	if sb != nil {
		self, args, attr, err := sb.wrap(&st.spec, w.currentPod().Name, path, argv)
		if err != nil {
			return nil, err
		}
		c = exec.Command(self, args[1:]...)
		c.Args[0] = args[0]
		c.SysProcAttr = attr
	} else {
		c = exec.Command(path, argv[1:]...)
		c.Args[0] = argv[0]
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	c.Env = st.env
	c.Dir = w.dir
	return c, nil
}

// runIn runs a command in a running container's context and returns its
// output (exec probes and hooks).
func (w *podWorker) runIn(ctx context.Context, st *ctrState, argv []string) (string, error) {
	c, err := w.command(st, argv)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	c.Stdout = &out
	c.Stderr = &out
	c.WaitDelay = time.Second
	if err := startTracked(c); err != nil {
		return "", err
	}
	pgid := c.Process.Pid
	w.addExec(pgid)
	defer w.removeExec(pgid)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case <-done:
		}
	}()
	err = c.Wait()
	close(done)
	untrack(pgid)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("timed out")
	}
	return out.String(), err
}

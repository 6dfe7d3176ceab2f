package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// podWorker owns one pod: it runs its containers, restarts them according to
// the restart policy, writes the pod's status, and stops everything when the
// pod is deleted.
type podWorker struct {
	k   *kubelet
	dir string

	pod      atomic.Pointer[v1.Pod] // latest object seen
	deleting atomic.Bool            // deletionTimestamp seen
	removed  atomic.Bool            // gone from the API
	wake     chan struct{}
	finished chan struct{}

	mu         sync.Mutex // guards the fields below
	inits      []*ctrState
	ctrs       []*ctrState
	startTime  metav1.Time
	lastPushed *v1.PodStatus
	terminal   bool // phase Succeeded/Failed was reported: nothing runs any more
	condTimes  map[v1.PodConditionType]condMemo
	execs      map[int]struct{}
	sb         *sandbox // the pod's sandbox, once made (sandboxed pods only)
	sbRetry    time.Time
}

type condMemo struct {
	status v1.ConditionStatus
	at     metav1.Time
}

// ctrState is what the kubelet knows of one container.
type ctrState struct {
	spec     v1.Container
	init     bool
	run      *containerRun
	runSeq   int // how many runs were started
	env      []string
	restarts int32

	current                 *v1.ContainerStateTerminated // the current run's end, once it ended
	last                    *v1.ContainerStateTerminated // the previous run's end (lastState)
	prevLog                 string                       // log file of the previous run
	waitReason, waitMessage string

	backoff   time.Duration
	nextStart time.Time

	// the current run's probe results: started (the startup probe passed,
	// or there is none), ready (the readiness probe's verdict)
	started, ready bool
}

func newPodWorker(k *kubelet, pod *v1.Pod) *podWorker {
	w := &podWorker{
		k:         k,
		dir:       k.podDir(pod),
		wake:      make(chan struct{}, 1),
		finished:  make(chan struct{}),
		execs:     map[int]struct{}{},
		condTimes: map[v1.PodConditionType]condMemo{},
	}
	w.pod.Store(pod)
	if pod.DeletionTimestamp != nil {
		w.deleting.Store(true)
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, &ctrState{spec: c, init: true, waitReason: "PodInitializing"})
	}
	for _, c := range pod.Spec.Containers {
		reason := "ContainerCreating"
		if len(pod.Spec.InitContainers) > 0 {
			reason = "PodInitializing"
		}
		w.ctrs = append(w.ctrs, &ctrState{spec: c, waitReason: reason})
	}
	if len(w.inits) > 0 {
		w.inits[0].waitReason = "ContainerCreating"
	}
	// A pod this kubelet finds already running (the kubelet was restarted):
	// its processes are gone, so its containers count one more restart.
	byName := map[string]v1.ContainerStatus{}
	for _, cs := range append(append([]v1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		byName[cs.Name] = cs
	}
	for _, st := range append(append([]*ctrState{}, w.inits...), w.ctrs...) {
		if cs, ok := byName[st.spec.Name]; ok {
			st.restarts = cs.RestartCount
			if cs.State.Running != nil || cs.State.Terminated != nil {
				st.restarts++
			}
		}
	}
	if pod.Status.StartTime != nil {
		w.startTime = *pod.Status.StartTime
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		w.terminal = true
	}
	return w
}

func (w *podWorker) currentPod() *v1.Pod { return w.pod.Load() }
func (w *podWorker) isRemoved() bool     { return w.removed.Load() }

func (w *podWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *v1.Pod) {
	w.pod.Store(pod)
	if pod.DeletionTimestamp != nil {
		w.deleting.Store(true)
	}
	w.poke()
}

func (w *podWorker) removedFromAPI() {
	w.removed.Store(true)
	w.deleting.Store(true)
	w.poke()
}

func (w *podWorker) loop() {
	defer close(w.finished)
	ctx := context.Background()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		klog.ErrorS(err, "Creating pod directory", "dir", w.dir)
	}
	for {
		if w.deleting.Load() {
			w.terminate(ctx)
			return
		}
		w.mu.Lock()
		next := w.sync(ctx)
		var status *v1.PodStatus
		if !w.terminal {
			s := w.status()
			status = &s
		}
		w.mu.Unlock()
		if status != nil {
			w.writeStatus(ctx, *status)
		}

		var timer <-chan time.Time
		if !next.IsZero() {
			d := time.Until(next)
			if d < 10*time.Millisecond {
				d = 10 * time.Millisecond
			}
			timer = time.After(d)
		}
		select {
		case <-w.wake:
		case <-timer:
		}
	}
}

func (w *podWorker) writeStatus(ctx context.Context, status v1.PodStatus) {
	w.mu.Lock()
	same := w.lastPushed != nil && apiequality.Semantic.DeepEqual(*w.lastPushed, status)
	w.mu.Unlock()
	if same || w.deleting.Load() {
		return
	}
	base := w.currentPod()
	res, err := w.k.pushStatus(ctx, base, status)
	if err != nil {
		if apierrors.IsNotFound(err) {
			w.removedFromAPI()
			return
		}
		klog.ErrorS(err, "Writing pod status", "pod", klog.KObj(w.currentPod()))
		// try again soon
		go func() { time.Sleep(time.Second); w.poke() }()
		return
	}
	w.mu.Lock()
	w.lastPushed = &status
	if status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed {
		w.terminal = true
	}
	w.mu.Unlock()
	if res != nil {
		// keep the written object, unless the informer brought a newer one meanwhile
		w.pod.CompareAndSwap(base, res)
	}
}

// sync starts or restarts containers as needed. It returns when it wants to
// be called again (zero: only on an event). w.mu is held.
func (w *podWorker) sync(ctx context.Context) time.Time {
	if w.terminal {
		return time.Time{}
	}
	pod := w.currentPod()
	now := time.Now()
	if w.startTime.IsZero() {
		w.startTime = metav1.NewTime(now)
	}
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, st := range append(append([]*ctrState{}, w.inits...), w.ctrs...) {
		w.observeExit(st)
	}
	if wantsSandbox(pod) && w.sb == nil {
		if now.Before(w.sbRetry) {
			return w.sbRetry
		}
		sb, err := w.k.setupSandbox(ctx, pod, w.dir)
		if err != nil {
			klog.ErrorS(err, "Creating the pod sandbox", "pod", klog.KObj(pod))
			w.k.recorder.Eventf(pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			for _, st := range append(append([]*ctrState{}, w.inits...), w.ctrs...) {
				st.waitReason, st.waitMessage = "CreatePodSandboxError", err.Error()
			}
			w.sbRetry = now.Add(5 * time.Second)
			return w.sbRetry
		}
		w.sb = sb
	}

	// Init containers run one after the other, each to completion
	// (sidecars, restartPolicy: Always, only need to have started).
	for _, st := range w.inits {
		sidecar := st.spec.RestartPolicy != nil && *st.spec.RestartPolicy == v1.ContainerRestartPolicyAlways
		if sidecar {
			earliest(w.ensure(ctx, pod, st, v1.RestartPolicyAlways))
			if st.run == nil {
				return next
			}
			continue
		}
		if st.current != nil && st.current.ExitCode == 0 {
			continue // done
		}
		if st.run != nil && !st.run.exited() {
			return next // running
		}
		policy := pod.Spec.RestartPolicy
		if policy == v1.RestartPolicyAlways {
			policy = v1.RestartPolicyOnFailure
		}
		earliest(w.ensure(ctx, pod, st, policy))
		return next
	}
	for _, st := range w.ctrs {
		earliest(w.ensure(ctx, pod, st, pod.Spec.RestartPolicy))
	}
	return next
}

// observeExit turns an ended run into a terminated state.
func (w *podWorker) observeExit(st *ctrState) {
	if st.run == nil || !st.run.exited() || st.current != nil {
		return
	}
	r := st.run
	reason := "Completed"
	if r.exitCode != 0 {
		reason = "Error"
	}
	t := &v1.ContainerStateTerminated{
		ExitCode:    int32(r.exitCode),
		Reason:      reason,
		StartedAt:   metav1.NewTime(r.startedAt),
		FinishedAt:  metav1.NewTime(r.finishedAt),
		ContainerID: "mcpctl://" + r.id,
	}
	if r.signal != 0 {
		t.Signal = int32(r.signal)
	}
	if r.exitCode != 0 && st.spec.TerminationMessagePolicy == v1.TerminationMessageFallbackToLogsOnError {
		t.Message = lastLines(r.logPath, 80, 2048)
	}
	st.current = t
	ran := r.finishedAt.Sub(r.startedAt)
	if ran >= 2*w.k.cfg.backoffMax {
		st.backoff = 0 // it ran long enough: forgive earlier crashes
	}
	pod := w.currentPod()
	if r.exitCode != 0 {
		klog.InfoS("Container exited", "pod", klog.KObj(pod), "container", st.spec.Name, "exitCode", r.exitCode)
	}
}

func (w *podWorker) nextBackoff(st *ctrState) time.Duration {
	if st.backoff == 0 {
		st.backoff = w.k.cfg.backoffBase
	} else {
		st.backoff *= 2
		if st.backoff > w.k.cfg.backoffMax {
			st.backoff = w.k.cfg.backoffMax
		}
	}
	return st.backoff
}

// ensure brings one container towards running, following the restart
// policy. It returns when it wants to be called again.
func (w *podWorker) ensure(ctx context.Context, pod *v1.Pod, st *ctrState, policy v1.RestartPolicy) time.Time {
	if st.run != nil && st.current == nil {
		return time.Time{} // running
	}
	now := time.Now()
	if st.current != nil {
		restart := policy == v1.RestartPolicyAlways ||
			(policy == v1.RestartPolicyOnFailure && st.current.ExitCode != 0)
		if !restart {
			return time.Time{}
		}
		if st.nextStart.IsZero() {
			d := w.nextBackoff(st)
			st.nextStart = st.current.FinishedAt.Add(d)
			w.k.recorder.Eventf(pod, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", st.spec.Name, pod.Name)
		}
		if now.Before(st.nextStart) {
			st.waitReason = "CrashLoopBackOff"
			st.waitMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				st.backoff, st.spec.Name, pod.Name, pod.Namespace, pod.UID)
			return st.nextStart
		}
	} else if !st.nextStart.IsZero() && now.Before(st.nextStart) {
		return st.nextStart // image pull / config back-off
	}
	return w.start(ctx, pod, st)
}

// start starts a new run of a container.
func (w *podWorker) start(ctx context.Context, pod *v1.Pod, st *ctrState) time.Time {
	c := &st.spec
	now := time.Now()
	if w.k.stopping.Load() {
		return time.Time{}
	}
	retryLater := func(reason, msg string) time.Time {
		st.waitReason, st.waitMessage = reason, msg
		st.nextStart = now.Add(w.nextBackoff(st))
		return st.nextStart
	}

	// What to run: the command, or the image's entrypoint from the table.
	var argv []string
	if len(c.Command) > 0 {
		argv = append(append([]string{}, c.Command...), c.Args...)
	} else {
		ep, ok, err := w.k.images.lookup(c.Image)
		if !ok {
			msg := fmt.Sprintf("image %q is not in the test kubelet's image table (%s)", c.Image, w.k.images.describe())
			if err != nil {
				msg += ": " + err.Error()
			}
			reason := "ErrImagePull"
			if st.waitReason == "ErrImagePull" || st.waitReason == "ImagePullBackOff" {
				reason = "ImagePullBackOff"
				msg = fmt.Sprintf("Back-off pulling image %q: %s", c.Image, msg)
			} else {
				w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", c.Image, msg)
			}
			return retryLater(reason, msg)
		}
		argv = append(ep, c.Args...)
		if len(argv) == 0 {
			return retryLater("CreateContainerError", fmt.Sprintf("image %q has an empty entrypoint and the container has no args", c.Image))
		}
	}

	ip := w.k.cfg.address
	if w.sb != nil {
		ip = w.sb.ip.String()
	}
	env, envMap, err := w.k.podEnv(ctx, pod, c, w.dir, ip, w.sb != nil)
	if err != nil {
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return retryLater("CreateContainerConfigError", err.Error())
	}
	for i := range argv {
		argv[i] = expand(argv[i], envMap)
	}

	if st.current != nil || st.runSeq > 0 {
		if st.current != nil {
			st.last = st.current
		}
		st.restarts++
	}
	st.current = nil
	st.runSeq++
	id := containerID(pod, c.Name, st.runSeq)
	logPath := filepath.Join(w.dir, "logs", c.Name, fmt.Sprintf("%d.log", st.restarts))
	if st.run != nil {
		st.prevLog = st.run.logPath
	}
	env = append(env, containerEnv+"="+id)
	spec := runSpec{argv: argv, env: env, dir: w.dir, stdin: c.Stdin, logPath: logPath, id: id}
	if sb := w.sb; sb != nil {
		spec.wrap = func(path string, argv []string) (string, []string, *syscall.SysProcAttr, error) {
			return sb.wrap(c, pod.Name, path, argv)
		}
	}
	run, err := startRun(spec)
	if err != nil {
		// The container "ran" and failed at once, as a runtime reports it.
		w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Failed", "Error: failed to start container %q: %v", c.Name, err)
		st.run = nil
		st.waitReason, st.waitMessage = "", ""
		st.current = &v1.ContainerStateTerminated{
			ExitCode: 128, Reason: "StartError", Message: err.Error(),
			StartedAt: metav1.NewTime(now), FinishedAt: metav1.NewTime(now), ContainerID: "mcpctl://" + id,
		}
		st.nextStart = time.Time{}
		return now // decide on restart right away
	}
	st.run = run
	st.env = env
	st.waitReason, st.waitMessage = "", ""
	st.nextStart = time.Time{}
	st.started = c.StartupProbe == nil
	st.ready = c.StartupProbe == nil && c.ReadinessProbe == nil
	w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	go w.probeLoop(st, run)
	go func() {
		<-run.done
		w.poke()
	}()
	return time.Time{}
}

func containerID(pod *v1.Pod, name string, seq int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", pod.UID, name, seq)))
	return hex.EncodeToString(h[:])
}

func expand(s string, env map[string]string) string {
	return expansion.Expand(s, expansion.MappingFuncFor(env))
}

// ---- status ----

func (w *podWorker) containerStatus(st *ctrState, pod *v1.Pod) v1.ContainerStatus {
	cs := v1.ContainerStatus{
		Name:         st.spec.Name,
		Image:        st.spec.Image,
		ImageID:      "mcpctl.test/image@sha256:" + shortHash(st.spec.Image),
		RestartCount: st.restarts,
	}
	if st.last != nil {
		cs.LastTerminationState.Terminated = st.last.DeepCopy()
	}
	started := false
	switch {
	case st.run != nil && st.current == nil:
		cs.ContainerID = "mcpctl://" + st.run.id
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(st.run.startedAt)}
		started = st.started
		cs.Ready = st.ready
	case st.current != nil && st.waitReason == "CrashLoopBackOff":
		cs.ContainerID = st.current.ContainerID
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: st.waitReason, Message: st.waitMessage}
		cs.LastTerminationState.Terminated = st.current.DeepCopy()
	case st.current != nil:
		cs.ContainerID = st.current.ContainerID
		cs.State.Terminated = st.current.DeepCopy()
	default:
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: st.waitReason, Message: st.waitMessage}
	}
	if st.init {
		cs.Ready = st.current != nil && st.current.ExitCode == 0
		if st.spec.RestartPolicy != nil && *st.spec.RestartPolicy == v1.ContainerRestartPolicyAlways {
			cs.Ready = started
		}
	}
	cs.Started = &started
	return cs
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// status computes the pod's status from the containers' states. w.mu is held.
func (w *podWorker) status() v1.PodStatus {
	pod := w.currentPod()
	ip := w.k.cfg.address
	s := v1.PodStatus{
		HostIP:    ip,
		HostIPs:   []v1.HostIP{{IP: ip}},
		PodIP:     ip,
		PodIPs:    []v1.PodIP{{IP: ip}},
		StartTime: &w.startTime,
	}
	if wantsSandbox(pod) {
		s.PodIP, s.PodIPs = "", nil // until its network exists
		if w.sb != nil {
			s.PodIP, s.PodIPs = w.sb.ip.String(), []v1.PodIP{{IP: w.sb.ip.String()}}
		}
	}
	for _, st := range w.inits {
		s.InitContainerStatuses = append(s.InitContainerStatuses, w.containerStatus(st, pod))
	}
	for _, st := range w.ctrs {
		s.ContainerStatuses = append(s.ContainerStatuses, w.containerStatus(st, pod))
	}

	initialized := true
	initFailed := false
	for _, st := range w.inits {
		sidecar := st.spec.RestartPolicy != nil && *st.spec.RestartPolicy == v1.ContainerRestartPolicyAlways
		if sidecar {
			if st.run == nil || st.current != nil {
				initialized = false
			}
			continue
		}
		if st.current == nil || st.current.ExitCode != 0 {
			initialized = false
			if st.current != nil && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				initFailed = true
			}
		}
	}

	// Phase, as the kubelet computes it.
	var running, waiting, stopped, succeeded int
	for _, st := range w.ctrs {
		switch {
		case st.run != nil && st.current == nil:
			running++
		case st.current != nil:
			stopped++ // also when waiting to restart (CrashLoopBackOff)
			if st.current.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	switch {
	case initFailed:
		s.Phase = v1.PodFailed
	case !initialized:
		s.Phase = v1.PodPending
	case waiting > 0:
		s.Phase = v1.PodPending
	case running > 0:
		s.Phase = v1.PodRunning
	case stopped > 0:
		switch pod.Spec.RestartPolicy {
		case v1.RestartPolicyAlways:
			s.Phase = v1.PodRunning
		case v1.RestartPolicyOnFailure:
			if stopped == succeeded {
				s.Phase = v1.PodSucceeded
			} else {
				s.Phase = v1.PodRunning
			}
		default:
			if stopped == succeeded {
				s.Phase = v1.PodSucceeded
			} else {
				s.Phase = v1.PodFailed
			}
		}
	default:
		s.Phase = v1.PodPending
	}

	cond := func(t v1.PodConditionType, ok bool, reason string) v1.PodCondition {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason}
		if ok {
			c.Status = v1.ConditionTrue
			c.Reason = ""
		}
		memo, seen := w.condTimes[t]
		if !seen || memo.status != c.Status {
			memo = condMemo{status: c.Status, at: metav1.Now()}
			w.condTimes[t] = memo
		}
		c.LastTransitionTime = memo.at
		return c
	}
	allReady := len(w.ctrs) > 0
	var notReady []string
	for _, st := range w.ctrs {
		if !(st.run != nil && st.current == nil && st.ready) {
			allReady = false
			notReady = append(notReady, st.spec.Name)
		}
	}
	terminal := s.Phase == v1.PodSucceeded || s.Phase == v1.PodFailed
	readyReason := "ContainersNotReady"
	if terminal {
		readyReason = "PodCompleted"
	}
	gatesOK := true
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == v1.ConditionTrue {
				ok = true
			}
		}
		gatesOK = gatesOK && ok
	}
	initReason := "ContainersNotInitialized"
	if terminal && initialized {
		initReason = ""
	}
	ic := cond(v1.PodInitialized, initialized, initReason)
	if terminal && initialized {
		ic.Reason = "PodCompleted"
	}
	cr := cond(v1.ContainersReady, allReady, readyReason)
	rd := cond(v1.PodReady, allReady && gatesOK, readyReason)
	if !allReady && !terminal && len(notReady) > 0 {
		cr.Message = fmt.Sprintf("containers with unready status: %v", notReady)
		rd.Message = cr.Message
	} else if allReady && !gatesOK {
		rd.Reason = "ReadinessGatesNotReady"
	}
	s.Conditions = []v1.PodCondition{
		cond(v1.PodReadyToStartContainers, !terminal, ""),
		ic, rd, cr,
	}
	return s
}

// ---- stopping ----

func (w *podWorker) grace() time.Duration {
	pod := w.currentPod()
	if w.removed.Load() {
		return time.Second
	}
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// killAll stops every process of the pod: containers (SIGTERM, SIGKILL after
// grace) and exec sessions.
func (w *podWorker) killAll(grace time.Duration) {
	w.mu.Lock()
	var runs []*containerRun
	for _, st := range append(append([]*ctrState{}, w.ctrs...), w.inits...) {
		if st.run != nil && !st.run.exited() {
			runs = append(runs, st.run)
		}
	}
	execs := make([]int, 0, len(w.execs))
	for pgid := range w.execs {
		execs = append(execs, pgid)
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(grace) }()
	}
	for _, pgid := range execs {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	wg.Wait()
}

// terminate handles the pod's deletion: stop everything, then remove the
// pod from the API (grace 0), as a real kubelet does.
func (w *podWorker) terminate(ctx context.Context) {
	pod := w.currentPod()
	grace := w.grace()
	klog.InfoS("Stopping pod", "pod", klog.KObj(pod), "grace", grace)
	w.mu.Lock()
	anyRunning := false
	for _, st := range append(append([]*ctrState{}, w.ctrs...), w.inits...) {
		if st.run != nil && !st.run.exited() {
			anyRunning = true
			w.k.recorder.Eventf(pod, v1.EventTypeNormal, "Killing", "Stopping container %s", st.spec.Name)
		}
	}
	w.mu.Unlock()
	if anyRunning {
		w.killAll(w.runPreStop(grace))
	}
	w.destroySandbox()
	if !w.removed.Load() {
		w.k.deletePod(ctx, pod)
	}
	w.k.forget(pod.UID)
	if err := os.RemoveAll(w.dir); err != nil {
		klog.ErrorS(err, "Removing pod directory", "dir", w.dir)
	}
}

// shutdown stops the pod's processes when the kubelet stops.
func (w *podWorker) shutdown(grace time.Duration) {
	w.killAll(grace)
	w.destroySandbox()
}

func (w *podWorker) destroySandbox() {
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	if sb != nil {
		sb.destroy()
	}
}

// runPreStop runs the running containers' preStop hooks (at once, within the
// grace period) and returns what is left of the grace period (at least 2 s,
// as the kubelet gives).
func (w *podWorker) runPreStop(grace time.Duration) time.Duration {
	w.mu.Lock()
	var hooked []*ctrState
	for _, st := range w.ctrs {
		if st.run != nil && !st.run.exited() && st.spec.Lifecycle != nil && st.spec.Lifecycle.PreStop != nil {
			hooked = append(hooked, st)
		}
	}
	w.mu.Unlock()
	if len(hooked) == 0 {
		return grace
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, st := range hooked {
		wg.Add(1)
		go func() { defer wg.Done(); w.preStop(ctx, st) }()
	}
	wg.Wait()
	left := grace - time.Since(started)
	if left < 2*time.Second {
		left = 2 * time.Second
	}
	return left
}

// ---- lookups for the kubelet API ----

func (w *podWorker) containerState(name string) *ctrState {
	for _, st := range append(append([]*ctrState{}, w.ctrs...), w.inits...) {
		if st.spec.Name == name {
			return st
		}
	}
	return nil
}

// runningContainer returns the current run of a container, if it runs.
func (w *podWorker) runningContainer(name string) (*containerRun, *ctrState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if name == "" && len(w.ctrs) > 0 {
		name = w.ctrs[0].spec.Name
	}
	st := w.containerState(name)
	if st == nil {
		return nil, nil, fmt.Errorf("container %q not found in pod %s", name, w.currentPod().Name)
	}
	if st.run == nil || st.run.exited() {
		return nil, nil, fmt.Errorf("container %q in pod %s is not running", name, w.currentPod().Name)
	}
	return st.run, st, nil
}

func (w *podWorker) addExec(pgid int) {
	w.mu.Lock()
	w.execs[pgid] = struct{}{}
	w.mu.Unlock()
}

func (w *podWorker) removeExec(pgid int) {
	w.mu.Lock()
	delete(w.execs, pgid)
	w.mu.Unlock()
}

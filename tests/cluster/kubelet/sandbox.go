package main

// Pod sandboxes: pods that opt in (annotation sandboxAnnotation) get what a
// container runtime gives a pod, minus images:
//
//   - their own network namespace, joined to the node's bridge by a veth pair,
//     with an address of --pod-cidr (status.podIP), reachable from the host and
//     from the other sandboxed pods; no route out of the node (no NAT);
//   - a mount (and UTS) namespace per process, in which the pod's volumes are
//     bind-mounted at their mountPaths (emptyDir, projected ServiceAccount
//     token + ca.crt + namespace, configMap, secret, downwardAPI, hostPath),
//     /etc/hosts lists the cluster's Services (kept up to date) and
//     /etc/resolv.conf points nowhere, so names outside /etc/hosts fail at once;
//   - KUBERNETES_SERVICE_HOST/PORT = the `kubernetes` Service, which the
//     kubelet's service proxy (proxy.go) forwards to the API server.
//
// Every process of a sandboxed pod (containers, exec sessions, exec probes
// and hooks) is started through the kubelet's own binary (`_enter`), which
// joins the pod's network namespace, makes the mounts and execs the command.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// sandboxAnnotation: a pod with this annotation set to "true" runs in a
// sandbox of its own (and not on the host's network).
const sandboxAnnotation = "mcpctl.test/sandbox"

func wantsSandbox(pod *v1.Pod) bool {
	return pod.Annotations[sandboxAnnotation] == "true" && !pod.Spec.HostNetwork
}

// podNetwork is the node's pod network: one bridge, one address per pod.
type podNetwork struct {
	bridge string
	cidr   *net.IPNet
	gw     net.IP // the bridge's address: the node, seen from the pods
	prefix int

	mu   sync.Mutex
	used map[string]bool
}

// runTracked runs a command to its end, out of the reaper's way (which would
// otherwise take its exit status: "waitid: no child processes").
func runTracked(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := startTracked(cmd); err != nil {
		return "", err
	}
	err := cmd.Wait()
	untrack(cmd.Process.Pid)
	return out.String(), err
}

func ipCmd(args ...string) error {
	out, err := runTracked("ip", args...)
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return nil
}

// newPodNetwork creates the bridge (after removing what an earlier run left).
func newPodNetwork(bridge, cidr string) (*podNetwork, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("pod sandboxes need root (network and mount namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("pod sandboxes need the `ip` command (iproute2)")
	}
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("--pod-cidr %q: not an IPv4 CIDR", cidr)
	}
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return nil, fmt.Errorf("--pod-cidr %q is too small", cidr)
	}
	gw := addIP(n.IP.To4(), 1)
	p := &podNetwork{bridge: bridge, cidr: n, gw: gw, prefix: ones, used: map[string]bool{gw.String(): true}}
	p.cleanup()
	if err := ipCmd("link", "add", bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ipCmd("addr", "add", fmt.Sprintf("%s/%d", gw, ones), "dev", bridge); err != nil {
		return nil, err
	}
	if err := ipCmd("link", "set", bridge, "up"); err != nil {
		return nil, err
	}
	return p, nil
}

// cleanup removes the bridge and every network namespace of this bridge's
// pods (deleting a namespace deletes its end of the veth pair, and the pair).
func (p *podNetwork) cleanup() {
	out, _ := runTracked("ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.HasPrefix(fields[0], p.bridge+"-") {
			killInNetns(filepath.Join("/var/run/netns", fields[0]))
			_ = ipCmd("netns", "del", fields[0])
		}
	}
	_, _ = runTracked("ip", "link", "del", p.bridge)
	_ = os.RemoveAll(p.shmRoot())
}

func (p *podNetwork) shmRoot() string { return filepath.Join("/dev/shm", "mcpctl-"+p.bridge) }

func addIP(ip net.IP, n uint32) net.IP {
	v := binary.BigEndian.Uint32(ip.To4()) + n
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, v)
	return out
}

func (p *podNetwork) allocate() (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ones, bits := p.cidr.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	for i := uint32(2); i < size-1; i++ {
		ip := addIP(p.cidr.IP.To4(), i)
		if !p.used[ip.String()] {
			p.used[ip.String()] = true
			return ip, nil
		}
	}
	return nil, fmt.Errorf("no free address in %s", p.cidr)
}

func (p *podNetwork) release(ip net.IP) {
	p.mu.Lock()
	delete(p.used, ip.String())
	p.mu.Unlock()
}

// sandbox is one pod's network namespace, files and volumes.
type sandbox struct {
	net      *podNetwork
	name     string // network namespace, /var/run/netns/<name>
	hostVeth string
	ip       net.IP
	dir      string // <pod dir>/sandbox
	hosts    string
	resolv   string
	volumes  map[string]string // volume name -> directory (or file) on the host
	shm      string            // memory-backed emptyDirs live below it
	stop     chan struct{}     // stops the token refreshers
	once     sync.Once
}

func (s *sandbox) nsPath() string { return filepath.Join("/var/run/netns", s.name) }

// setupSandbox makes a pod's network namespace and volumes.
func (k *kubelet) setupSandbox(ctx context.Context, pod *v1.Pod, podDir string) (*sandbox, error) {
	if k.net == nil {
		return nil, fmt.Errorf("pod %s/%s asks for a sandbox (%s), but this kubelet runs without pod networks: %s",
			pod.Namespace, pod.Name, sandboxAnnotation, k.netErr)
	}
	h := sha256.Sum256([]byte(k.net.bridge + "/" + string(pod.UID)))
	id := hex.EncodeToString(h[:])
	s := &sandbox{
		net:      k.net,
		name:     k.net.bridge + "-" + id[:12],
		hostVeth: "mv" + id[:12],
		dir:      filepath.Join(podDir, "sandbox"),
		volumes:  map[string]string{},
		shm:      filepath.Join(k.net.shmRoot(), string(pod.UID)),
		stop:     make(chan struct{}),
	}
	ip, err := k.net.allocate()
	if err != nil {
		return nil, err
	}
	s.ip = ip
	fail := func(err error) (*sandbox, error) {
		s.destroy()
		return nil, err
	}
	if _, err := os.Stat(s.nsPath()); err == nil {
		_ = ipCmd("netns", "del", s.name) // what an attempt that failed half-way left
	}
	steps := [][]string{
		{"netns", "add", s.name},
		{"link", "add", s.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", s.name},
		{"link", "set", s.hostVeth, "master", k.net.bridge, "up"},
		{"-n", s.name, "addr", "add", fmt.Sprintf("%s/%d", ip, k.net.prefix), "dev", "eth0"},
		{"-n", s.name, "link", "set", "eth0", "up"},
		{"-n", s.name, "link", "set", "lo", "up"},
		{"-n", s.name, "route", "add", "default", "via", k.net.gw.String()},
	}
	for _, args := range steps {
		if err := ipCmd(args...); err != nil {
			return fail(err)
		}
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fail(err)
	}
	s.hosts = filepath.Join(s.dir, "hosts")
	s.resolv = filepath.Join(s.dir, "resolv.conf")
	// No name server: a name that /etc/hosts does not know fails at once
	// (nothing listens on the pod's own 127.0.0.1:53) instead of timing out.
	if err := os.WriteFile(s.resolv, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(s.hosts, []byte(k.hostsFile(pod, ip)), 0o644); err != nil {
		return fail(err)
	}
	if err := k.makeVolumes(ctx, pod, podDir, s); err != nil {
		return fail(err)
	}
	klog.InfoS("Pod sandbox ready", "pod", klog.KObj(pod), "netns", s.name, "ip", ip)
	return s, nil
}

// destroy stops every process left in the namespace and removes it.
func (s *sandbox) destroy() {
	s.once.Do(func() {
		close(s.stop)
		killInNetns(s.nsPath())
		if err := ipCmd("netns", "del", s.name); err != nil && !strings.Contains(err.Error(), "No such file") {
			klog.ErrorS(err, "Removing network namespace")
		}
		_, _ = runTracked("ip", "link", "del", s.hostVeth) // normally gone with the namespace
		if s.ip != nil {
			s.net.release(s.ip)
		}
		_ = os.RemoveAll(s.shm)
	})
}

// killInNetns sends SIGKILL to every process in a network namespace (what a
// pod's processes started in other sessions or process groups leave behind).
func killInNetns(path string) int {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	n := 0
	for round := 0; round < 3; round++ {
		entries, _ := os.ReadDir("/proc")
		found := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == want {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					found++
				}
			}
		}
		n += found
		if found == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
		reapOrphans()
	}
	return n
}

// ---- volumes ----

// makeVolumes materializes the pod's volumes on the host.
func (k *kubelet) makeVolumes(ctx context.Context, pod *v1.Pod, podDir string, s *sandbox) error {
	for _, vol := range pod.Spec.Volumes {
		dir := filepath.Join(podDir, "volumes", vol.Name)
		src := vol.VolumeSource
		switch {
		case src.EmptyDir != nil:
			if src.EmptyDir.Medium == v1.StorageMediumMemory {
				dir = filepath.Join(s.shm, vol.Name) // tmpfs, as a memory-backed emptyDir is
			}
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return err
			}
			_ = os.Chmod(dir, 0o777)
		case src.HostPath != nil:
			dir = src.HostPath.Path
		case src.Projected != nil, src.ConfigMap != nil, src.Secret != nil, src.DownwardAPI != nil:
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := k.writeProjected(ctx, pod, vol, dir, s.stop); err != nil {
				return fmt.Errorf("volume %q: %w", vol.Name, err)
			}
		default:
			k.recorder.Eventf(pod, v1.EventTypeWarning, "FailedMount",
				"volume %q: this volume type is not supported by the test kubelet (not mounted)", vol.Name)
			continue
		}
		s.volumes[vol.Name] = dir
	}
	return nil
}

type fileSource struct {
	data  map[string][]byte
	items []v1.KeyToPath
}

// writeProjected writes a projected/configMap/secret/downwardAPI volume, and
// keeps its ServiceAccount tokens fresh.
func (k *kubelet) writeProjected(ctx context.Context, pod *v1.Pod, vol v1.Volume, dir string, stop <-chan struct{}) error {
	var sources []v1.VolumeProjection
	switch {
	case vol.Projected != nil:
		sources = vol.Projected.Sources
	case vol.ConfigMap != nil:
		sources = []v1.VolumeProjection{{ConfigMap: &v1.ConfigMapProjection{
			LocalObjectReference: vol.ConfigMap.LocalObjectReference, Items: vol.ConfigMap.Items, Optional: vol.ConfigMap.Optional}}}
	case vol.Secret != nil:
		sources = []v1.VolumeProjection{{Secret: &v1.SecretProjection{
			LocalObjectReference: v1.LocalObjectReference{Name: vol.Secret.SecretName}, Items: vol.Secret.Items, Optional: vol.Secret.Optional}}}
	case vol.DownwardAPI != nil:
		sources = []v1.VolumeProjection{{DownwardAPI: &v1.DownwardAPIProjection{Items: vol.DownwardAPI.Items}}}
	}
	optional := func(p *bool) bool { return p != nil && *p }
	for _, src := range sources {
		switch {
		case src.ServiceAccountToken != nil:
			if err := k.writeToken(ctx, pod, src.ServiceAccountToken, dir, stop); err != nil {
				return err
			}
		case src.ConfigMap != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if optional(src.ConfigMap.Optional) {
					continue
				}
				return err
			}
			data := map[string][]byte{}
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			for key, v := range cm.BinaryData {
				data[key] = v
			}
			if err := writeItems(dir, fileSource{data, src.ConfigMap.Items}); err != nil {
				return err
			}
		case src.Secret != nil:
			sec, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if optional(src.Secret.Optional) {
					continue
				}
				return err
			}
			if err := writeItems(dir, fileSource{sec.Data, src.Secret.Items}); err != nil {
				return err
			}
		case src.DownwardAPI != nil:
			for _, item := range src.DownwardAPI.Items {
				if item.FieldRef == nil {
					continue
				}
				v, err := fieldRefValue(pod, item.FieldRef.FieldPath, "", k.cfg.address)
				if err != nil {
					return err
				}
				if err := writeFile(filepath.Join(dir, item.Path), []byte(v)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func writeItems(dir string, src fileSource) error {
	if len(src.items) == 0 {
		for key, v := range src.data {
			if err := writeFile(filepath.Join(dir, key), v); err != nil {
				return err
			}
		}
		return nil
	}
	for _, item := range src.items {
		v, ok := src.data[item.Key]
		if !ok {
			return fmt.Errorf("key %q not found", item.Key)
		}
		if err := writeFile(filepath.Join(dir, item.Path), v); err != nil {
			return err
		}
	}
	return nil
}

// writeFile replaces a file atomically (readers see the old or the new one).
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeToken asks for a token bound to the pod (TokenRequest, as a kubelet
// does; the Node authorizer allows it for pods on this node) and renews it
// at 80 % of its lifetime.
func (k *kubelet) writeToken(ctx context.Context, pod *v1.Pod, src *v1.ServiceAccountTokenProjection, dir string, stop <-chan struct{}) error {
	account := pod.Spec.ServiceAccountName
	if account == "" {
		account = "default"
	}
	expiration := int64(3607)
	if src.ExpirationSeconds != nil {
		expiration = *src.ExpirationSeconds
	}
	var audiences []string
	if src.Audience != "" {
		audiences = []string{src.Audience}
	}
	request := func(ctx context.Context) (time.Time, error) {
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: &expiration,
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}
		res, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, account, tr, metav1.CreateOptions{})
		if err != nil {
			return time.Time{}, fmt.Errorf("token of ServiceAccount %s/%s: %w", pod.Namespace, account, err)
		}
		if err := writeFile(filepath.Join(dir, src.Path), []byte(res.Status.Token)); err != nil {
			return time.Time{}, err
		}
		return res.Status.ExpirationTimestamp.Time, nil
	}
	issued := time.Now()
	expires, err := request(ctx)
	if err != nil {
		return err
	}
	go func() {
		for {
			wait := time.Duration(float64(expires.Sub(issued)) * 0.8)
			if wait < 10*time.Second {
				wait = 10 * time.Second
			}
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
			issued = time.Now()
			e, err := request(context.Background())
			if err != nil {
				klog.ErrorS(err, "Renewing a ServiceAccount token", "pod", klog.KObj(pod))
				expires = issued.Add(15 * time.Second) // try again soon
				continue
			}
			expires = e
		}
	}()
	return nil
}

// binds lists what a container of the pod sees at which path: its volume
// mounts, /etc/hosts and /etc/resolv.conf.
func (s *sandbox) binds(c *v1.Container) []string {
	out := []string{s.hosts + "=/etc/hosts", s.resolv + "=/etc/resolv.conf"}
	mounts := append([]v1.VolumeMount{}, c.VolumeMounts...)
	// parents before children
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].MountPath) < len(mounts[j].MountPath) })
	for _, m := range mounts {
		src, ok := s.volumes[m.Name]
		if !ok {
			continue
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
			_ = os.MkdirAll(src, 0o777)
		}
		out = append(out, src+"="+m.MountPath)
	}
	return out
}

// wrap turns a command into one that runs inside the sandbox: the kubelet's
// own binary enters it and execs path with argv.
func (s *sandbox) wrap(c *v1.Container, hostname, path string, argv []string) (string, []string, *syscall.SysProcAttr, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, err
	}
	args := []string{"mcpctl-test-kubelet", "_enter", "--netns", s.nsPath(), "--hostname", hostname}
	for _, b := range s.binds(c) {
		args = append(args, "--bind", b)
	}
	args = append(args, "--", path)
	args = append(args, argv...)
	attr := &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS}
	return self, args, attr, nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// enterSandbox is `mcpctl-test-kubelet _enter`: it runs in a new mount and
// UTS namespace (made by the kubelet when starting it), joins the pod's
// network namespace, makes the mounts and execs the command. Its errors go
// to the container's log, and it exits 127.
func enterSandbox(args []string) {
	runtime.LockOSThread() // setns applies to this thread, which then execs
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "mcpctl-test-kubelet: entering the pod sandbox: "+format+"\n", a...)
		os.Exit(127)
	}
	fs := flag.NewFlagSet("_enter", flag.ContinueOnError)
	netns := fs.String("netns", "", "network namespace file")
	hostname := fs.String("hostname", "", "host name")
	var binds stringList
	fs.Var(&binds, "bind", "SRC=DST bind mount")
	if err := fs.Parse(args); err != nil {
		fail("%v", err)
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fail("no command")
	}
	// Mounts made here stay in this process's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fail("making / private: %v", err)
	}
	f, err := os.Open(*netns)
	if err != nil {
		fail("%v", err)
	}
	if _, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		err := error(errno)
		fail("joining %s: %v", *netns, err)
	}
	f.Close()
	if *hostname != "" {
		_ = syscall.Sethostname([]byte(*hostname))
	}
	// Every source is opened first: a mount (e.g. at /tmp) may hide a later
	// one's source.
	type bind struct {
		fd    int
		dst   string
		isDir bool
	}
	var todo []bind
	for _, b := range binds {
		src, dst, ok := strings.Cut(b, "=")
		if !ok {
			fail("bad --bind %q", b)
		}
		fd, err := syscall.Open(src, oPath|syscall.O_CLOEXEC, 0)
		if err != nil {
			fail("volume source %s: %v", src, err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			fail("volume source %s: %v", src, err)
		}
		todo = append(todo, bind{fd, dst, st.Mode&syscall.S_IFMT == syscall.S_IFDIR})
	}
	// A directory on PATH that a volume would hide (e.g. a checkout and its venv under
	// /tmp, with an emptyDir at /tmp) is bound back over it, as the whole entry just
	// below the volume (the checkout: an editable install's sources live there too):
	// the pod's commands are the host's.
	var hidden []bind
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		for _, b := range todo {
			top := strings.TrimSuffix(b.dst, "/") + "/"
			if !b.isDir || !strings.HasPrefix(dir, top) {
				continue
			}
			entry := top + strings.SplitN(strings.TrimPrefix(dir, top), "/", 2)[0]
			if !seen[entry] {
				seen[entry] = true
				if fd, err := syscall.Open(entry, oPath|syscall.O_CLOEXEC, 0); err == nil {
					hidden = append(hidden, bind{fd, entry, true})
				}
			}
			break
		}
	}
	todo = append(todo, hidden...)
	for _, b := range todo {
		if b.isDir {
			// a missing mount point is made on the host (an empty directory)
			if err := os.MkdirAll(b.dst, 0o755); err != nil {
				fail("mount point %s: %v", b.dst, err)
			}
		} else if _, err := os.Stat(b.dst); err != nil {
			_ = os.MkdirAll(filepath.Dir(b.dst), 0o755)
			if f, err := os.OpenFile(b.dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err := syscall.Mount(fmt.Sprintf("/proc/self/fd/%d", b.fd), b.dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			fail("mounting at %s: %v", b.dst, err)
		}
		syscall.Close(b.fd)
	}
	if err := syscall.Exec(rest[0], rest[1:], os.Environ()); err != nil {
		fail("exec %s: %v", rest[0], err)
	}
}

// openForRewrite opens a file to be rewritten in place (a bind mount of it
// keeps showing the same inode).
func openForRewrite(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
}

// Command mcpctl-test-kubelet is a small kubelet for mcpctl's test cluster.
//
// It registers one Node with the API server, keeps its Lease and Ready
// condition fresh, and runs every container of the pods bound to that node as
// a plain local process (no images, no isolation). It serves the kubelet API
// (exec, attach, port-forward, containerLogs) over HTTPS using the official
// streaming server library, so the API server talks to it exactly as it talks
// to a real kubelet.
//
// It is test equipment: every pod process runs as the kubelet's own user on
// the host, in a working directory under the run directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// markerEnv is set in the environment of every process the kubelet starts.
// Its value is the run directory, so that leftovers of this cluster (and only
// of this cluster) can be found and stopped.
const markerEnv = "MCPCTL_TEST_KUBELET_RUN"

// containerEnv is set to the container run's id in the environment of its
// process: when that process ends, whatever it left (daemons in sessions of
// their own, e.g. Ray's) is killed too, as a runtime kills a container's
// cgroup.
const containerEnv = "MCPCTL_TEST_KUBELET_CONTAINER"

type config struct {
	kubeconfig    string
	nodeName      string
	address       string
	port          int
	tlsCert       string
	tlsKey        string
	clientCA      string
	runDir        string
	imagesFile    string
	backoffBase   time.Duration
	backoffMax    time.Duration
	cpu           string
	memory        string
	maxPods       string
	apiServerHost string
	apiServerPort string
	version       string
	podCIDR       string
	podBridge     string
	proxyConfig   string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "_enter" {
		enterSandbox(os.Args[2:]) // a sandboxed pod's process on its way in
		return
	}
	var cfg config
	klog.InitFlags(nil)
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig with the node's credentials")
	flag.StringVar(&cfg.nodeName, "node-name", "mcpctl-node-0", "name of the Node to register")
	flag.StringVar(&cfg.address, "address", "127.0.0.1", "address for the kubelet API (also the node's InternalIP and every pod's IP)")
	flag.IntVar(&cfg.port, "port", 16250, "HTTPS port of the kubelet API")
	flag.StringVar(&cfg.tlsCert, "tls-cert-file", "", "serving certificate")
	flag.StringVar(&cfg.tlsKey, "tls-private-key-file", "", "serving key")
	flag.StringVar(&cfg.clientCA, "client-ca-file", "", "CA that signs the API server's kubelet client certificate (required: clients without one are refused)")
	flag.StringVar(&cfg.runDir, "run-dir", "", "directory for pod working dirs and logs")
	flag.StringVar(&cfg.imagesFile, "images", "", "comma-separated YAML files mapping image names to entrypoints (later files win)")
	flag.DurationVar(&cfg.backoffBase, "backoff-base", 2*time.Second, "first crash-loop / image-pull back-off")
	flag.DurationVar(&cfg.backoffMax, "backoff-max", 60*time.Second, "longest crash-loop / image-pull back-off")
	flag.StringVar(&cfg.cpu, "cpu", "64", "cpu capacity of the node")
	flag.StringVar(&cfg.memory, "memory", "256Gi", "memory capacity of the node")
	flag.StringVar(&cfg.maxPods, "max-pods", "500", "pod capacity of the node")
	flag.StringVar(&cfg.apiServerHost, "apiserver-host", "127.0.0.1", "KUBERNETES_SERVICE_HOST given to pods")
	flag.StringVar(&cfg.apiServerPort, "apiserver-port", "16443", "KUBERNETES_SERVICE_PORT given to pods")
	flag.StringVar(&cfg.version, "kubelet-version", "v0.0.0", "version reported in the node's nodeInfo")
	flag.StringVar(&cfg.podCIDR, "pod-cidr", "", "addresses of sandboxed pods (annotation "+sandboxAnnotation+`: "true"`+"); the first one is the bridge's; empty: no sandboxes")
	flag.StringVar(&cfg.podBridge, "pod-bridge", "mcpctl0", "name of the bridge of the sandboxed pods' network (their network namespaces are named <bridge>-<id>)")
	flag.StringVar(&cfg.proxyConfig, "proxy-kubeconfig", "", "kubeconfig of the service proxy (system:kube-proxy); needed with --pod-cidr")
	flag.Parse()

	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mcpctl-test-kubelet:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	if cfg.runDir == "" || cfg.tlsCert == "" || cfg.tlsKey == "" || cfg.clientCA == "" {
		return fmt.Errorf("--run-dir, --tls-cert-file, --tls-private-key-file and --client-ca-file are required")
	}
	runDir, err := filepath.Abs(cfg.runDir)
	if err != nil {
		return err
	}
	cfg.runDir = runDir
	if err := os.MkdirAll(filepath.Join(runDir, "pods"), 0o755); err != nil {
		return err
	}
	startReaper()
	// Leftovers of an earlier kubelet of this run dir (killed hard) are stopped
	// first, so no pod runs twice.
	if n := killMarkedProcesses(runDir); n > 0 {
		klog.InfoS("Stopped leftover pod processes", "count", n)
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "mcpctl-test-kubelet"
	restCfg.QPS = 50
	restCfg.Burst = 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	images := newImageTable(cfg.imagesFile)
	k := newKubelet(cfg, client, images)
	if err := k.startPodNetwork(ctx); err != nil {
		k.netErr = err.Error()
		klog.ErrorS(err, "Pod sandboxes are unavailable")
	} else if k.net == nil {
		k.netErr = "started without --pod-cidr"
	}

	if err := k.registerNode(ctx); err != nil {
		return fmt.Errorf("registering node: %w", err)
	}
	srv, err := k.serveAPI()
	if err != nil {
		return err
	}
	go k.heartbeat(ctx)
	k.watchPods(ctx)
	klog.InfoS("Test kubelet running", "node", cfg.nodeName, "address", cfg.address, "port", cfg.port)

	<-ctx.Done()
	klog.InfoS("Shutting down: stopping all pod processes")
	shutdownCtx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	k.stopAll(5 * time.Second)
	if k.proxy != nil {
		k.proxy.close()
	}
	if k.net != nil {
		k.net.cleanup()
	}
	killMarkedProcesses(runDir)
	for i := 0; i < 10; i++ {
		time.Sleep(100 * time.Millisecond)
		reapOrphans()
	}
	return nil
}

// startPodNetwork makes the bridge and starts the service proxy (with
// --pod-cidr).
func (k *kubelet) startPodNetwork(ctx context.Context) error {
	if k.cfg.podCIDR == "" {
		return nil
	}
	if k.cfg.proxyConfig == "" {
		return fmt.Errorf("--pod-cidr needs --proxy-kubeconfig")
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", k.cfg.proxyConfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "mcpctl-test-kubelet/proxy"
	proxyClient, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	n, err := newPodNetwork(k.cfg.podBridge, k.cfg.podCIDR)
	if err != nil {
		return err
	}
	k.net = n
	k.proxy = k.startProxy(proxyClient, ctx.Done())
	klog.InfoS("Pod network ready", "bridge", n.bridge, "cidr", n.cidr, "gateway", n.gw)
	return nil
}

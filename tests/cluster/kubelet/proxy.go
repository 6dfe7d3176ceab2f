package main

// A userspace service proxy (what kube-proxy's userspace mode was), for the
// node's pod network: every ClusterIP Service's TCP ports are served on its
// ClusterIP, an address the kubelet adds to the pod bridge, so sandboxed pods
// (through their default route) and the host reach it. Each connection goes
// to one ready endpoint of the Service's EndpointSlices, in turn (terminating
// but serving ones when none is ready); one that refuses is skipped.
// `default/kubernetes` goes to the API server. An endpoint at the bridge's
// own address means the host: it is dialled on 127.0.0.1 (so a selector-less
// Service whose EndpointSlice names the node's pod-network address reaches a
// service that listens on the host's loopback, e.g. a test's PostgreSQL).
//
// It also writes the sandboxed pods' /etc/hosts from the Services.

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

type serviceProxy struct {
	k         *kubelet
	apiserver string // host:port of the API server, from the host

	services cache.Indexer
	slices   cache.Indexer

	mu        sync.Mutex
	listeners map[string]*svcListener // "ip:port"
	addrs     map[string]bool         // ClusterIPs on the bridge
	names     string                  // the hosts lines last written
	turn      atomic.Uint64
}

type svcListener struct {
	ln              net.Listener
	namespace, name string
	portName        string
}

const serviceNameLabel = "kubernetes.io/service-name"

func (k *kubelet) startProxy(client kubernetes.Interface, stop <-chan struct{}) *serviceProxy {
	p := &serviceProxy{
		k:         k,
		apiserver: net.JoinHostPort("127.0.0.1", k.cfg.apiServerPort),
		listeners: map[string]*svcListener{},
		addrs:     map[string]bool{},
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf := factory.Core().V1().Services().Informer()
	sliceInf := factory.Discovery().V1().EndpointSlices().Informer()
	_ = sliceInf.AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[serviceNameLabel]}, nil
	}})
	p.services = svcInf.GetIndexer()
	p.slices = sliceInf.GetIndexer()
	changed := func(any) { p.sync() }
	_, _ = svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { p.sync() },
		DeleteFunc: changed,
	})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	p.sync()
	return p
}

func clusterIPOf(s *v1.Service) net.IP {
	if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone {
		return nil
	}
	return net.ParseIP(s.Spec.ClusterIP).To4()
}

// kubernetesService is KUBERNETES_SERVICE_HOST/PORT for sandboxed pods.
func (p *serviceProxy) kubernetesService() (string, string, error) {
	obj, ok, _ := p.services.GetByKey("default/kubernetes")
	if ok {
		s := obj.(*v1.Service)
		if ip := clusterIPOf(s); ip != nil && len(s.Spec.Ports) > 0 {
			return ip.String(), strconv.Itoa(int(s.Spec.Ports[0].Port)), nil
		}
	}
	return "", "", fmt.Errorf("the Service default/kubernetes has no ClusterIP yet")
}

// sync makes the listeners match the Services, and rewrites the hosts files
// when the names changed.
func (p *serviceProxy) sync() {
	want := map[string]*svcListener{}
	var lines []string
	for _, obj := range p.services.List() {
		s := obj.(*v1.Service)
		ip := clusterIPOf(s)
		if ip == nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s\t%s %s", ip, s.Namespace, s.Name))
		for _, port := range s.Spec.Ports {
			if port.Protocol != "" && port.Protocol != v1.ProtocolTCP {
				continue
			}
			key := net.JoinHostPort(ip.String(), strconv.Itoa(int(port.Port)))
			want[key] = &svcListener{namespace: s.Namespace, name: s.Name, portName: port.Name}
		}
	}
	sort.Strings(lines)
	p.mu.Lock()
	for key, l := range p.listeners {
		if w, ok := want[key]; !ok || w.namespace != l.namespace || w.name != l.name || w.portName != l.portName {
			l.ln.Close()
			delete(p.listeners, key)
		}
	}
	used := map[string]bool{}
	for key, l := range want {
		host, _, _ := net.SplitHostPort(key)
		used[host] = true
		if _, ok := p.listeners[key]; ok {
			continue
		}
		if !p.addrs[host] {
			if err := ipCmd("addr", "add", host+"/32", "dev", p.k.net.bridge); err != nil && !strings.Contains(err.Error(), "File exists") {
				klog.ErrorS(err, "Adding a ClusterIP to the bridge")
				continue
			}
			p.addrs[host] = true
		}
		ln, err := net.Listen("tcp", key)
		if err != nil {
			klog.ErrorS(err, "Serving a Service", "service", l.namespace+"/"+l.name, "address", key)
			continue
		}
		l.ln = ln
		p.listeners[key] = l
		go p.serve(l)
	}
	for host := range p.addrs {
		if !used[host] {
			_ = ipCmd("addr", "del", host+"/32", "dev", p.k.net.bridge)
			delete(p.addrs, host)
		}
	}
	names := strings.Join(lines, "\n")
	rewrite := names != p.names
	p.names = names
	p.mu.Unlock()
	if rewrite {
		p.k.refreshHosts()
	}
}

func (p *serviceProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, l := range p.listeners {
		l.ln.Close()
		delete(p.listeners, key)
	}
}

// hostsLines: one line per Service, with the names a pod of namespace ns
// resolves (the short name only in its own namespace).
func (p *serviceProxy) hostsLines(ns string) string {
	p.mu.Lock()
	names := p.names
	p.mu.Unlock()
	var b strings.Builder
	for _, line := range strings.Split(names, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			continue
		}
		ip, sns, name := fields[0], fields[1], fields[2]
		fmt.Fprintf(&b, "%s\t%s.%s.svc.cluster.local %s.%s.svc %s.%s", ip, name, sns, name, sns, name, sns)
		if sns == ns {
			fmt.Fprintf(&b, " %s", name)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (p *serviceProxy) serve(l *svcListener) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(l, conn)
	}
}

// endpoints lists the addresses ("ip:port") of a Service port: ready ones,
// or else serving (terminating) ones.
func (p *serviceProxy) endpoints(l *svcListener) []string {
	if l.namespace == "default" && l.name == "kubernetes" {
		return []string{p.apiserver}
	}
	objs, _ := p.slices.ByIndex("service", l.namespace+"/"+l.name)
	var ready, serving []string
	for _, obj := range objs {
		s := obj.(*discoveryv1.EndpointSlice)
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port := int32(-1)
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			if name == l.portName && sp.Port != nil && (sp.Protocol == nil || *sp.Protocol == v1.ProtocolTCP) {
				port = *sp.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			isReady := e.Conditions.Ready == nil || *e.Conditions.Ready
			isServing := e.Conditions.Serving != nil && *e.Conditions.Serving
			for _, a := range e.Addresses {
				if p.k.net != nil && a == p.k.net.gw.String() {
					a = "127.0.0.1" // the node itself: its loopback services
				}
				addr := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if isReady {
					ready = append(ready, addr)
				} else if isServing {
					serving = append(serving, addr)
				}
			}
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return serving
}

func (p *serviceProxy) forward(l *svcListener, client net.Conn) {
	defer client.Close()
	addrs := p.endpoints(l)
	if len(addrs) == 0 {
		klog.V(2).InfoS("No endpoint for the Service", "service", l.namespace+"/"+l.name)
		return
	}
	first := int(p.turn.Add(1) % uint64(len(addrs)))
	var backend net.Conn
	for i := range addrs {
		addr := addrs[(first+i)%len(addrs)]
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err == nil {
			backend = c
			break
		}
		klog.V(2).InfoS("Endpoint refused", "service", l.namespace+"/"+l.name, "endpoint", addr, "err", err)
	}
	if backend == nil {
		return
	}
	defer backend.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(backend, client)
		if tc, ok := backend.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(client, backend)
	if tc, ok := client.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
}

// hostsFile is a sandboxed pod's /etc/hosts.
func (k *kubelet) hostsFile(pod *v1.Pod, ip net.IP) string {
	var b strings.Builder
	b.WriteString("# written by the test kubelet: the cluster's Services\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fmt.Fprintf(&b, "%s\t%s\n", ip, pod.Name)
	if k.proxy != nil {
		b.WriteString(k.proxy.hostsLines(pod.Namespace))
	}
	return b.String()
}

// refreshHosts rewrites every sandboxed pod's hosts file in place (the same
// file stays bind-mounted at /etc/hosts).
func (k *kubelet) refreshHosts() {
	for _, w := range k.allWorkers() {
		w.mu.Lock()
		s := w.sb
		w.mu.Unlock()
		if s == nil || s.hosts == "" {
			continue
		}
		f, err := openForRewrite(s.hosts)
		if err != nil {
			continue
		}
		_, _ = f.WriteString(k.hostsFile(w.currentPod(), s.ip))
		f.Close()
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

type kubelet struct {
	cfg      config
	client   kubernetes.Interface
	images   *imageTable
	recorder record.EventRecorder
	started  time.Time
	stopping atomic.Bool // shutting down: start nothing new

	mu      sync.Mutex
	workers map[types.UID]*podWorker

	net    *podNetwork // nil: no pod sandboxes (netErr says why)
	netErr string
	proxy  *serviceProxy // with net
}

func newKubelet(cfg config, client kubernetes.Interface, images *imageTable) *kubelet {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: cfg.nodeName})
	return &kubelet{
		cfg:      cfg,
		client:   client,
		images:   images,
		recorder: rec,
		started:  time.Now(),
		workers:  map[types.UID]*podWorker{},
	}
}

// watchPods starts an informer on the pods bound to this node and returns
// once it has synced.
func (k *kubelet) watchPods(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + k.cfg.nodeName
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podSeen(obj) },
		UpdateFunc: func(_, obj any) { k.podSeen(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				k.podGone(pod)
			}
		},
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
}

func (k *kubelet) podSeen(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName != k.cfg.nodeName {
		return
	}
	k.mu.Lock()
	w, ok := k.workers[pod.UID]
	if !ok {
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		k.mu.Unlock()
		go w.loop()
		return
	}
	k.mu.Unlock()
	w.update(pod)
}

func (k *kubelet) podGone(pod *v1.Pod) {
	k.mu.Lock()
	w, ok := k.workers[pod.UID]
	k.mu.Unlock()
	if ok {
		w.removedFromAPI()
	}
}

func (k *kubelet) forget(uid types.UID) {
	k.mu.Lock()
	delete(k.workers, uid)
	k.mu.Unlock()
}

// findPod returns the worker of a pod by namespace and name (and UID when
// given).
func (k *kubelet) findPod(namespace, name, uid string) *podWorker {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workers {
		p := w.currentPod()
		if p.Namespace == namespace && p.Name == name && (uid == "" || string(p.UID) == uid) && !w.isRemoved() {
			return w
		}
	}
	return nil
}

func (k *kubelet) findUID(uid string) *podWorker {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.workers[types.UID(uid)]
}

func (k *kubelet) allWorkers() []*podWorker {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*podWorker, 0, len(k.workers))
	for _, w := range k.workers {
		out = append(out, w)
	}
	return out
}

// stopAll stops every pod's processes (kubelet shutdown). Pods stay in the
// API, as with a real kubelet that stops.
func (k *kubelet) stopAll(grace time.Duration) {
	k.stopping.Store(true)
	var wg sync.WaitGroup
	for _, w := range k.allWorkers() {
		wg.Add(1)
		go func() { defer wg.Done(); w.shutdown(grace) }()
	}
	wg.Wait()
}

// ---- pod directories ----

func (k *kubelet) podDir(pod *v1.Pod) string {
	return filepath.Join(k.cfg.runDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// ---- status writing ----

// pushStatus writes a pod's status, retrying on conflicts.
func (k *kubelet) pushStatus(ctx context.Context, pod *v1.Pod, status v1.PodStatus) (*v1.Pod, error) {
	cur := pod
	for attempt := 0; attempt < 5; attempt++ {
		upd := cur.DeepCopy()
		upd.Status = mergeStatus(status, cur)
		res, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if err == nil {
			return res, nil
		}
		if !apierrors.IsConflict(err) {
			return nil, err
		}
		cur, err = k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if cur.UID != pod.UID {
			return nil, apierrors.NewNotFound(v1.Resource("pods"), pod.Name)
		}
	}
	return nil, fmt.Errorf("too many conflicts writing status of %s/%s", pod.Namespace, pod.Name)
}

// mergeStatus writes the fields the kubelet owns over the pod's current
// status: the rest (nominatedNodeName, qosClass, ...) and the conditions the
// kubelet does not own (PodScheduled, readiness gates) stay.
func mergeStatus(status v1.PodStatus, cur *v1.Pod) v1.PodStatus {
	old := cur.Status
	out := *old.DeepCopy()
	out.Phase = status.Phase
	out.HostIP, out.HostIPs = status.HostIP, status.HostIPs
	out.PodIP, out.PodIPs = status.PodIP, status.PodIPs
	out.StartTime = status.StartTime
	out.InitContainerStatuses = status.InitContainerStatuses
	out.ContainerStatuses = status.ContainerStatuses
	out.ObservedGeneration = cur.Generation
	out.Conditions = mergeConditions(status.Conditions, old.Conditions, cur.Generation)
	return out
}

// mergeConditions keeps the conditions the kubelet does not own and the
// transition times of unchanged ones.
func mergeConditions(conditions, old []v1.PodCondition, generation int64) []v1.PodCondition {
	owned := map[v1.PodConditionType]bool{}
	for _, c := range conditions {
		owned[c.Type] = true
	}
	var conds []v1.PodCondition
	for _, c := range old {
		if !owned[c.Type] {
			conds = append(conds, c)
		}
	}
	for _, c := range conditions {
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		c.ObservedGeneration = generation
		conds = append(conds, c)
	}
	return conds
}

func (k *kubelet) deletePod(ctx context.Context, pod *v1.Pod) {
	zero := int64(0)
	uid := pod.UID
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "Deleting pod", "pod", klog.KObj(pod))
	}
}

// ---- environment ----

// inheritedEnv is the part of the kubelet's own environment pods get: a pod
// is a local process, and tools in it need the machine's PATH, CA bundle
// settings and caches (HOME). Variables that would point a pod at the test
// harness itself (kubeconfig, mcpctl's and Ray's settings) are left out.
func inheritedEnv() [][2]string {
	var out [][2]string
	for _, kv := range os.Environ() {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || name == markerEnv {
			continue
		}
		upper := strings.ToUpper(name)
		skip := false
		for _, prefix := range []string{"KUBE", "MCPCTL_", "MCPD_", "RAY_", "PYTEST_"} {
			if strings.HasPrefix(upper, prefix) {
				skip = true
			}
		}
		if !skip {
			out = append(out, [2]string{name, value})
		}
	}
	return out
}

// podEnv builds a container's environment: the inherited base, HOSTNAME and
// the API server's address, then envFrom, then env with $(VAR) references
// expanded.
func (k *kubelet) podEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, dir, ip string, sandboxed bool) ([]string, map[string]string, error) {
	env := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := env[name]; !ok {
			order = append(order, name)
		}
		env[name] = value
	}
	for _, kv := range inheritedEnv() {
		set(kv[0], kv[1])
	}
	if _, ok := env["HOME"]; !ok {
		set("HOME", dir)
	}
	set("HOSTNAME", pod.Name)
	apiHost, apiPort := k.cfg.apiServerHost, k.cfg.apiServerPort
	if sandboxed {
		// the `kubernetes` Service, served by the kubelet's service proxy
		var err error
		if k.proxy == nil {
			return nil, nil, fmt.Errorf("no service proxy")
		}
		if apiHost, apiPort, err = k.proxy.kubernetesService(); err != nil {
			return nil, nil, err
		}
	}
	set("KUBERNETES_SERVICE_HOST", apiHost)
	set("KUBERNETES_SERVICE_PORT", apiPort)
	set("KUBERNETES_SERVICE_PORT_HTTPS", apiPort)

	secrets := map[string]*v1.Secret{}
	configMaps := map[string]*v1.ConfigMap{}
	getSecret := func(name string) (*v1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		secrets[name] = s
		return s, nil
	}
	getConfigMap := func(name string) (*v1.ConfigMap, error) {
		if cm, ok := configMaps[name]; ok {
			return cm, nil
		}
		cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		configMaps[name] = cm
		return cm, nil
	}
	optional := func(p *bool) bool { return p != nil && *p }

	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := getConfigMap(from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("configmap %q: %w", from.ConfigMapRef.Name, err)
			}
			for key, v := range cm.Data {
				set(from.Prefix+key, v)
			}
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("secret %q: %w", from.SecretRef.Name, err)
			}
			for key, v := range s.Data {
				set(from.Prefix+key, string(v))
			}
		}
	}

	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, env))
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.SecretKeyRef != nil:
			s, err := getSecret(vf.SecretKeyRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(vf.SecretKeyRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("secret %q: %w", vf.SecretKeyRef.Name, err)
			}
			v, ok := s.Data[vf.SecretKeyRef.Key]
			if !ok {
				if optional(vf.SecretKeyRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", vf.SecretKeyRef.Key, pod.Namespace, vf.SecretKeyRef.Name)
			}
			set(e.Name, string(v))
		case vf.ConfigMapKeyRef != nil:
			cm, err := getConfigMap(vf.ConfigMapKeyRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(vf.ConfigMapKeyRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("configmap %q: %w", vf.ConfigMapKeyRef.Name, err)
			}
			v, ok := cm.Data[vf.ConfigMapKeyRef.Key]
			if !ok {
				if optional(vf.ConfigMapKeyRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", vf.ConfigMapKeyRef.Key, pod.Namespace, vf.ConfigMapKeyRef.Name)
			}
			set(e.Name, v)
		case vf.FieldRef != nil:
			v, err := fieldRefValue(pod, vf.FieldRef.FieldPath, ip, k.cfg.address)
			if err != nil {
				return nil, nil, err
			}
			set(e.Name, v)
		case vf.ResourceFieldRef != nil:
			set(e.Name, resourceFieldValue(c, vf.ResourceFieldRef))
		}
	}
	set(markerEnv, k.cfg.runDir)
	out := make([]string, 0, len(order))
	for _, name := range order {
		out = append(out, name+"="+env[name])
	}
	return out, env, nil
}

func fieldRefValue(pod *v1.Pod, path, ip, hostIP string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return ip, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	for _, prefix := range []string{"metadata.labels", "metadata.annotations"} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			key := path[len(prefix)+2 : len(path)-2]
			if prefix == "metadata.labels" {
				return pod.Labels[key], nil
			}
			return pod.Annotations[key], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func resourceFieldValue(c *v1.Container, ref *v1.ResourceFieldSelector) string {
	switch ref.Resource {
	case "limits.cpu":
		if v, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
			return fmt.Sprint(v.MilliValue()/1000 + boolInt(v.MilliValue()%1000 != 0))
		}
	case "requests.cpu":
		if v, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
			return fmt.Sprint(v.MilliValue()/1000 + boolInt(v.MilliValue()%1000 != 0))
		}
	case "limits.memory":
		if v, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
			return fmt.Sprint(v.Value())
		}
	case "requests.memory":
		if v, ok := c.Resources.Requests[v1.ResourceMemory]; ok {
			return fmt.Sprint(v.Value())
		}
	}
	return "0"
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

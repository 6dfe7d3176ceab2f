package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	leaseNamespace     = "kube-node-lease"
	leaseDuration      = 40 * time.Second
	leaseRenewInterval = 10 * time.Second
	statusInterval     = 30 * time.Second
)

const (
	podCIDRAnnotation    = "mcpctl.test/pod-cidr"
	podGatewayAnnotation = "mcpctl.test/pod-gateway"
)

// nodeAnnotations tell tests where the sandboxed pods' network is: its CIDR,
// and the node's address on it (where an EndpointSlice points to reach a
// service on the host's loopback through a Service).
func (k *kubelet) nodeAnnotations() map[string]string {
	if k.net == nil {
		return nil
	}
	return map[string]string{podCIDRAnnotation: k.net.cidr.String(), podGatewayAnnotation: k.net.gw.String()}
}

func (k *kubelet) nodeLabels() map[string]string {
	return map[string]string{
		"kubernetes.io/arch":      runtime.GOARCH,
		"kubernetes.io/os":        runtime.GOOS,
		"kubernetes.io/hostname":  k.cfg.nodeName,
		"beta.kubernetes.io/arch": runtime.GOARCH,
		"beta.kubernetes.io/os":   runtime.GOOS,
	}
}

func (k *kubelet) nodeStatus(now metav1.Time, old *v1.NodeStatus) v1.NodeStatus {
	capacity := v1.ResourceList{
		v1.ResourceCPU:              resource.MustParse(k.cfg.cpu),
		v1.ResourceMemory:           resource.MustParse(k.cfg.memory),
		v1.ResourcePods:             resource.MustParse(k.cfg.maxPods),
		v1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		c := v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == t && o.Status == s && !o.LastTransitionTime.IsZero() {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		return c
	}
	return v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       v1.NodeRunning,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "mcpctl test kubelet is posting ready status"),
		},
		Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: k.cfg.address},
			{Type: v1.NodeHostName, Address: k.cfg.nodeName},
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(k.cfg.port)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               "mcpctl-test",
			SystemUUID:              "mcpctl-test-" + k.cfg.nodeName,
			BootID:                  strconv.FormatInt(k.started.Unix(), 10),
			KernelVersion:           kernelVersion(),
			OSImage:                 "mcpctl test kubelet (local processes)",
			ContainerRuntimeVersion: "mcpctl-test://0.1.0",
			KubeletVersion:          k.cfg.version,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
}

func kernelVersion() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// registerNode creates the Node (or takes over an existing one of the same
// name) and reports it Ready.
func (k *kubelet) registerNode(ctx context.Context) error {
	nodes := k.client.CoreV1().Nodes()
	var err error
	for attempt := 0; attempt < 60; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		now := metav1.Now()
		node := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.nodeName, Labels: k.nodeLabels(), Annotations: k.nodeAnnotations()},
			Status:     k.nodeStatus(now, nil),
		}
		var created *v1.Node
		created, err = nodes.Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = nodes.Get(ctx, k.cfg.nodeName, metav1.GetOptions{})
			if err == nil && created.Labels == nil {
				created.Labels = map[string]string{}
			}
			if err == nil {
				for key, v := range k.nodeLabels() {
					created.Labels[key] = v
				}
				if created.Annotations == nil {
					created.Annotations = map[string]string{}
				}
				delete(created.Annotations, podCIDRAnnotation)
				delete(created.Annotations, podGatewayAnnotation)
				for key, v := range k.nodeAnnotations() {
					created.Annotations[key] = v
				}
				created, err = nodes.Update(ctx, created, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			klog.ErrorS(err, "Registering node, will retry")
			continue
		}
		created.Status = k.nodeStatus(now, &created.Status)
		if _, err = nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			klog.ErrorS(err, "Writing node status, will retry")
			continue
		}
		if err = k.renewLease(ctx, created); err != nil {
			klog.ErrorS(err, "Writing node lease, will retry")
			continue
		}
		klog.InfoS("Node registered", "node", k.cfg.nodeName)
		return nil
	}
	return err
}

func (k *kubelet) renewLease(ctx context.Context, node *v1.Node) error {
	leases := k.client.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, k.cfg.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.nodeName, Namespace: leaseNamespace},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(k.cfg.nodeName),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration.Seconds())),
				RenewTime:            &now,
			},
		}
		if node != nil {
			lease.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}}
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(k.cfg.nodeName)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration.Seconds()))
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// heartbeat keeps the Lease and the Ready condition fresh.
func (k *kubelet) heartbeat(ctx context.Context) {
	leaseTick := time.NewTicker(leaseRenewInterval)
	statusTick := time.NewTicker(statusInterval)
	defer leaseTick.Stop()
	defer statusTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-leaseTick.C:
			if err := k.renewLease(ctx, nil); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Renewing node lease")
			}
		case <-statusTick.C:
			if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Updating node status")
			}
		}
	}
}

func (k *kubelet) updateNodeStatus(ctx context.Context) error {
	nodes := k.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, k.cfg.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return k.registerNode(ctx)
	}
	if err != nil {
		return err
	}
	node.Status = k.nodeStatus(metav1.Now(), &node.Status)
	_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// killMarkedProcesses SIGKILLs every process whose environment carries this
// run directory's marker: pod processes left behind by a kubelet that died.
func killMarkedProcesses(runDir string) int {
	return killEnvMarked(markerEnv, runDir)
}

// killEnvMarked sends SIGKILL to every process whose environment has
// name=value.
func killEnvMarked(name, value string) int {
	marker := []byte("\x00" + name + "=" + value + "\x00")
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		env = append(append([]byte{0}, env...), 0)
		if bytes.Contains(env, marker) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

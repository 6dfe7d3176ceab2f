{{/* Names, labels and shared bits of the mcpctl chart. */}}

{{- define "mcpctl.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, short enough for "-postgresql" and other suffixes. */}}
{{- define "mcpctl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcpctl.controlPlane" -}}
{{- required "namespaces.controlPlane is required" .Values.namespaces.controlPlane -}}
{{- end -}}

{{- define "mcpctl.dataPlane" -}}
{{- $dp := required "namespaces.dataPlane is required" .Values.namespaces.dataPlane -}}
{{- if eq $dp (include "mcpctl.controlPlane" .) -}}
{{- fail "namespaces.dataPlane must differ from namespaces.controlPlane: server pods get a default-deny NetworkPolicy and mcpd's Role" -}}
{{- end -}}
{{- $dp -}}
{{- end -}}

{{- define "mcpctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mcpctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcpctl
{{- end -}}

{{/* Selector labels of one component: include "mcpctl.selector" (list . "mcpd") */}}
{{- define "mcpctl.selector" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "mcpctl.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mcpctl.serviceAccountName" -}}
{{- default (include "mcpctl.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "mcpctl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mcpctl.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "mcpctl.fullname" .) -}}
{{- end -}}

{{- define "mcpctl.postgresql.host" -}}
{{- printf "%s.%s.svc" (include "mcpctl.postgresql.fullname" .) (include "mcpctl.controlPlane" .) -}}
{{- end -}}

{{/* The Secret holding the admin token and the Fernet key. */}}
{{- define "mcpctl.authSecret" -}}
{{- default (printf "%s-auth" (include "mcpctl.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "mcpctl.databaseSecret" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret -}}
{{- .Values.externalDatabase.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "mcpctl.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "mcpctl.databaseSecretKey" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret -}}
{{- .Values.externalDatabase.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{/* Container securityContext shared by every container of the chart. */}}
{{- define "mcpctl.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* "k=v,k2=v2" from a map, sorted by key (MCPD_NODE_SELECTOR). */}}
{{- define "mcpctl.selectorString" -}}
{{- $pairs := list -}}
{{- range $key := keys . | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (index $ $key)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* NetworkPolicy egress rules from the Server resource's egress shape (cidr, ports, protocol). */}}
{{- define "mcpctl.egressRules" -}}
{{- range . }}
- to:
    - ipBlock:
        cidr: {{ required "every egress rule needs a cidr" .cidr | quote }}
  {{- $protocol := default "TCP" .protocol }}
  {{- with .ports }}
  ports:
    {{- range . }}
    - protocol: {{ $protocol }}
      port: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Egress to cluster DNS. */}}
{{- define "mcpctl.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* Labels for a Namespace the chart creates. */}}
{{- define "mcpctl.namespaceLabels" -}}
{{ include "mcpctl.labels" . }}
{{- with .Values.namespaces.podSecurity }}
pod-security.kubernetes.io/enforce: {{ . }}
pod-security.kubernetes.io/enforce-version: latest
pod-security.kubernetes.io/warn: {{ . }}
pod-security.kubernetes.io/audit: {{ . }}
{{- end }}
{{- end -}}

{{/* The chart runs its own Ray cluster (head + workers): "true" or "". */}}
{{- define "mcpctl.chartRay" -}}
{{- if and .Values.ray.enabled .Values.mcpd.rayAddress -}}
{{- fail "mcpd.rayAddress joins an existing Ray cluster: set ray.enabled=false with it (ray.enabled runs the chart's own)" -}}
{{- end -}}
{{- if .Values.ray.enabled -}}true{{- end -}}
{{- end -}}

{{/* mcpd replicas share a Ray cluster (the chart's or mcpd.rayAddress): "true" or "" (then
each mcpd starts a Ray of its own inside its pod). */}}
{{- define "mcpctl.sharedRay" -}}
{{- if or (include "mcpctl.chartRay" .) .Values.mcpd.rayAddress -}}true{{- end -}}
{{- end -}}

{{/* RAY_ADDRESS of mcpd (and of the chart's Ray workers): the head's GCS or mcpd.rayAddress. */}}
{{- define "mcpctl.rayAddress" -}}
{{- if include "mcpctl.chartRay" . -}}
{{- printf "%s.%s.svc:%d" (include "mcpctl.rayHead" .) (include "mcpctl.controlPlane" .) (int .Values.ray.head.port) -}}
{{- else -}}
{{- .Values.mcpd.rayAddress -}}
{{- end -}}
{{- end -}}

{{- define "mcpctl.rayHead" -}}
{{- printf "%s-ray-head" (include "mcpctl.fullname" .) -}}
{{- end -}}

{{/* The custom Ray resource only the chart's workers advertise: mcpd's host and controller
actors ask for a share of it (MCPD_RAY_HOST_RESOURCE), so they run there and nowhere else. */}}
{{- define "mcpctl.rayHostResource" -}}mcpd-host{{- end -}}

{{/* mcpd's Ray wants a token from the chart's Secret: "true" or "". */}}
{{- define "mcpctl.rayNeedsToken" -}}
{{- if and (include "mcpctl.sharedRay" .) (eq .Values.ray.auth.mode "token") -}}true{{- end -}}
{{- end -}}

{{/* Environment of every Ray process the chart starts (head, workers, mcpd's raylet): token
authentication with the token from a Secret, never in plain text. */}}
{{- define "mcpctl.rayEnv" -}}
- name: RAY_AUTH_MODE
  value: {{ .Values.ray.auth.mode | quote }}
{{ include "mcpctl.rayNodeEnv" . }}
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
# Ray writes only below /tmp (an emptyDir): the root filesystem is read-only
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}

{{/* What a raylet of the shared Ray needs beyond the settings ConfigMap: the token, the pod's
address (the node's, which other nodes call). */}}
{{- define "mcpctl.rayNodeEnv" -}}
{{- if include "mcpctl.rayNeedsToken" . -}}
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "mcpctl.raySecret" . }}
      key: {{ include "mcpctl.raySecretKey" . }}
{{ end -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{/* The pods of a Ray cluster's members, as NetworkPolicy peers: mcpd's (each one runs a
raylet and a Ray driver), and with the chart's Ray its head's and workers'. */}}
{{- define "mcpctl.rayPeers" -}}
- podSelector:
    matchLabels:
      {{- include "mcpctl.selector" (list . "mcpd") | nindent 6 }}
{{- if include "mcpctl.chartRay" . }}
- podSelector:
    matchLabels:
      {{- include "mcpctl.selector" (list . "ray-head") | nindent 6 }}
- podSelector:
    matchLabels:
      {{- include "mcpctl.selector" (list . "ray-worker") | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Egress to the Kubernetes API server. */}}
{{- define "mcpctl.apiServerEgress" -}}
- ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .Values.networkPolicy.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Egress to the MCP server pods in the data plane (any port: HTTP servers choose theirs). */}}
{{- define "mcpctl.serversEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ include "mcpctl.dataPlane" . }}
      podSelector:
        matchLabels:
          app.kubernetes.io/managed-by: mcpd
{{- end -}}

{{/* Egress to the database (the bundled one, or externalDatabase.cidrs/port). */}}
{{- define "mcpctl.databaseEgress" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "mcpctl.selector" (list . "postgresql") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 5432
{{- else -}}
- ports:
    - protocol: TCP
      port: {{ .Values.externalDatabase.port }}
  {{- with .Values.externalDatabase.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* Pod-level securityContext of the chart's mcpd-image pods (mcpd, Ray head and workers). */}}
{{- define "mcpctl.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The Secret holding the Ray cluster's token (the chart's Ray or mcpd.rayAddress), and its key. */}}
{{- define "mcpctl.raySecret" -}}
{{- default (printf "%s-ray-token" (include "mcpctl.fullname" .)) .Values.ray.auth.existingSecret -}}
{{- end -}}

{{- define "mcpctl.raySecretKey" -}}
{{- if .Values.ray.auth.existingSecret -}}
{{- .Values.ray.auth.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

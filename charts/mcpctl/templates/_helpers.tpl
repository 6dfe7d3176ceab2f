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

{{/* mcpd joins a Ray cluster that wants a token: "true" or "". */}}
{{- define "mcpctl.rayNeedsToken" -}}
{{- if and .Values.mcpd.rayAddress (eq .Values.ray.auth.mode "token") -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the external Ray's token, and its key. */}}
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

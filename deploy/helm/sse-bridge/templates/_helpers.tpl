{{/* Name of the chart, or nameOverride (a label value: 63 characters at most). */}}
{{- define "sse-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the resources: fullnameOverride, else the release name (plus the chart's
name unless the release name already contains it). */}}
{{- define "sse-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sse-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sse-bridge.labels" -}}
helm.sh/chart: {{ include "sse-bridge.chart" . }}
{{ include "sse-bridge.selector" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sse-bridge.selector" -}}
app.kubernetes.io/name: {{ include "sse-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sse-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sse-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Directory the ConfigMap is mounted at (a directory mount, so kubelet updates it;
the bridge watches it). Not /etc/sse-bridge itself: mounts under /etc/sse-bridge/
(keys/ for JWT keys) would need mount points inside the read-only ConfigMap volume. */}}
{{- define "sse-bridge.configDir" -}}
/etc/sse-bridge/config
{{- end }}

{{/* "true" when the Prometheus Operator's resources are to be rendered:
monitoringCRDs true, or "auto" and the cluster serves monitoring.coreos.com/v1. */}}
{{- define "sse-bridge.monitoringCRDs" -}}
{{- $m := .Values.monitoringCRDs }}
{{- if kindIs "bool" $m }}
{{- if $m }}true{{ end }}
{{- else if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true
{{- end }}
{{- end }}

{{/* A probe on the admin port: httpGet of .path, plus the timing fields given. */}}
{{- define "sse-bridge.probe" -}}
httpGet:
  path: {{ .path }}
  port: admin
{{- with omit . "enabled" "path" }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Chart name, truncated to the DNS label limit.
*/}}
{{- define "delivery-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Uses the release name alone when it already contains the chart name.
*/}}
{{- define "delivery-operator.fullname" -}}
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

{{- define "delivery-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "delivery-operator.labels" -}}
helm.sh/chart: {{ include "delivery-operator.chart" . }}
{{ include "delivery-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "delivery-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "delivery-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the service account to use.
*/}}
{{- define "delivery-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "delivery-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
RBAC rules of the operator; shared by the ClusterRole and the per-namespace Roles.
*/}}
{{- define "delivery-operator.rules" -}}
- apiGroups: ["pipelines.delivery-operator.dev"]
  resources: ["deliverypipelines"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["pipelines.delivery-operator.dev"]
  resources: ["deliverypipelines/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["pipelines.delivery-operator.dev"]
  resources: ["deliverypipelines/finalizers"]
  verbs: ["patch", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# spec.outputs.configMapName: the outputs ConfigMap. Created when absent; read, patched and
# deleted only when this pipeline owns it (owner reference; deletion with a UID precondition).
# No list or watch: the operator never reads ConfigMaps it did not name.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}

{{/*
Watched namespaces as a comma-separated string ("" = all namespaces). Accepts a list or a
comma-separated string (so `--set watchNamespaces=a` works too); trims, drops blanks and duplicates.
*/}}
{{- define "delivery-operator.watchNamespaces" -}}
{{- $ns := .Values.watchNamespaces | default list }}
{{- if kindIs "string" $ns }}
{{- $ns = splitList "," $ns }}
{{- end }}
{{- $out := list }}
{{- range $ns }}
{{- $n := . | toString | trim }}
{{- if $n }}
{{- $out = append $out $n }}
{{- end }}
{{- end }}
{{- $out | uniq | join "," }}
{{- end }}

{{/*
Name of the leader-election Lease: leaderElection.leaseName, else the release's full name.
*/}}
{{- define "delivery-operator.leaseName" -}}
{{- default (include "delivery-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

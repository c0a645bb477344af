{{/* Names and labels shared by the templates. Cluster-scoped names carry the release name
so that several releases can share one cluster. */}}

{{- define "conclave.operator" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "conclave.serviceAccount" -}}
{{- default (include "conclave.operator" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Must match metadata.name in media-node-clusterrole.yaml. */}}
{{- define "conclave.mediaNodeRole" -}}
{{- printf "%s-media-node" .Release.Name -}}
{{- end -}}

{{- define "conclave.poolNamespace" -}}
{{- default .Release.Namespace .Values.operator.watchNamespace -}}
{{- end -}}

{{- define "conclave.labels" -}}
app.kubernetes.io/name: conclave
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: conclave
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "conclave.selector" -}}
app.kubernetes.io/name: conclave
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "conclave.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{/*
Chart name, shortened to the 63 characters a label value may hold.
*/}}
{{- define "alertmanager-wechat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name for the release's resources: "<release>-<chart>", or the release name alone
when it already contains the chart name.
*/}}
{{- define "alertmanager-wechat.fullname" -}}
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

{{/*
"name-version" for the helm.sh/chart label.
*/}}
{{- define "alertmanager-wechat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "alertmanager-wechat.labels" -}}
helm.sh/chart: {{ include "alertmanager-wechat.chart" . }}
{{ include "alertmanager-wechat.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the pods; they must never change between releases.
*/}}
{{- define "alertmanager-wechat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alertmanager-wechat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "alertmanager-wechat.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Name of the Secret mounted under /etc/alertmanager-wechat/secrets/, or "" when there is none.
*/}}
{{- define "alertmanager-wechat.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "alertmanager-wechat.fullname" . }}
{{- end }}
{{- end }}

{{/*
Non-empty when config.storage names the shared store (redis_url, redis_url_file for a URL
kept in a Secret, or redis_sentinel); "" when the embedded store is the only store.
*/}}
{{- define "alertmanager-wechat.redisURL" -}}
{{- $storage := (.Values.config | default dict).storage | default dict }}
{{- if $storage.redis_sentinel }}
{{- printf "sentinel:%v" ($storage.redis_sentinel.master_name | default "") }}
{{- else }}
{{- $storage.redis_url | default $storage.redis_url_file | default "" }}
{{- end }}
{{- end }}

{{/*
config.yml as rendered into the ConfigMap: .Values.config, plus the templates glob when the chart
mounts user templates (appended to any `templates` list the user wrote, never duplicated).
*/}}
{{- define "alertmanager-wechat.configYAML" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if .Values.templates }}
{{- $glob := "/etc/alertmanager-wechat/templates/*.hbs" }}
{{- $globs := $config.templates | default list }}
{{- if not (has $glob $globs) }}
{{- $_ := set $config "templates" (append $globs $glob) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

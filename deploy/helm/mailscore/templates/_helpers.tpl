{{/* Names, labels and the pieces every mailscore container shares. */}}

{{- define "mailscore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailscore.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of a component: (dict "ctx" $ "component" "web") */}}
{{- define "mailscore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "mailscore.selectorLabels" . }}
{{- end -}}

{{- define "mailscore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailscore.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object of the release, whatever its component (network policies select by it). */}}
{{- define "mailscore.releaseSelector" -}}
app.kubernetes.io/name: {{ include "mailscore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailscore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailscore.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mailscore.secretName" -}}
{{- default (printf "%s-secrets" (include "mailscore.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The image; a pool may name its own tag or add a suffix: (dict "ctx" $ "override" $pool.image) */}}
{{- define "mailscore.image" -}}
{{- $override := .override | default dict -}}
{{- $repository := $override.repository | default .ctx.Values.image.repository -}}
{{- $tag := $override.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s:%s%s" $repository $tag ($override.tagSuffix | default "") -}}
{{- end -}}

{{/* The settings of the ConfigMap, as a YAML map; the migration hook, which runs before the
     ConfigMap exists on a first install, sets them inline from the same map. */}}
{{- define "mailscore.configEnv" -}}
DJANGO_SETTINGS_MODULE: mailscore.settings.production
MAILSCORE_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
MAILSCORE_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
{{- /* Unset ones are left out: an empty variable would replace the application's default. */}}
{{- with .Values.config.publicUrl }}
MAILSCORE_PUBLIC_URL: {{ . | quote }}
{{- end }}
{{- with .Values.config.heloHostname }}
MAILSCORE_HELO_HOSTNAME: {{ . | quote }}
{{- end }}
{{- with .Values.config.mailFrom }}
MAILSCORE_MAIL_FROM: {{ . | quote }}
{{- end }}
MAILSCORE_METRICS_PORT: {{ .Values.workers.metricsPort | quote }}
PROMETHEUS_MULTIPROC_DIR: /tmp/prometheus
{{- range $name, $value := .Values.config.env }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The Secret's keys every container needs. */}}
{{- define "mailscore.secretEnv" -}}
{{- $secret := include "mailscore.secretName" . -}}
{{- $env := list -}}
{{- range $key := list "DATABASE_URL" "REDIS_URL" "DJANGO_SECRET_KEY" -}}
{{- $env = append $env (dict "name" $key "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $key))) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{- define "mailscore.envFrom" -}}
- configMapRef:
    name: {{ include "mailscore.fullname" . }}-config
{{- end -}}

{{- define "mailscore.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "mailscore.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* The writable places under a read-only root: /tmp and the metrics' multiprocess files. */}}
{{- define "mailscore.volumes" -}}
- name: tmp
  emptyDir: {}
- name: prometheus-multiproc
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- end -}}

{{- define "mailscore.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: prometheus-multiproc
  mountPath: /tmp/prometheus
{{- end -}}

{{/* Rolls the pods when a setting changes. */}}
{{- define "mailscore.podAnnotations" -}}
checksum/config: {{ include "mailscore.configEnv" . | sha256sum }}
{{- end -}}

{{- define "mailscore.podSpecCommon" -}}
serviceAccountName: {{ include "mailscore.serviceAccountName" . }}
automountServiceAccountToken: false
# Kubernetes would otherwise set <SERVICE>_PORT=tcp://... for every Service in the namespace,
# names that can collide with settings (mailscore-web -> MAILSCORE_WEB_PORT).
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "mailscore.podSecurityContext" . | nindent 2 }}
{{- end -}}

{{/*
Shared helpers: names, labels, images, env, security, volumes. Components call them with
(dict "root" $ "component" "gateway") where a component is needed.
*/}}

{{- define "lyceum.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lyceum.fullname" -}}
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

{{/* <fullname>-<component>; 52 characters leave room for StatefulSet pod suffixes and "-headless". */}}
{{- define "lyceum.componentName" -}}
{{- printf "%s-%s" (include "lyceum.fullname" .root | trunc 40 | trimSuffix "-") .component | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "lyceum.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lyceum.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lyceum.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "lyceum.labels" -}}
helm.sh/chart: {{ include "lyceum.chart" .root }}
{{ include "lyceum.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: lyceum
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "lyceum.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lyceum.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image of a workload: (dict "root" $ "image" .Values.X.image "gpu" N). GPU workloads take the CUDA variant:
image.cudaRepository if set, else the tag with .Values.image.cudaTagSuffix appended.
*/}}
{{- define "lyceum.image" -}}
{{- $g := .root.Values.image }}
{{- $repo := .image.repository }}
{{- $tag := default (default .root.Chart.AppVersion $g.tag) .image.tag | toString }}
{{- if gt (int (default 0 .gpu)) 0 }}
{{- if .image.cudaRepository }}
{{- $repo = .image.cudaRepository }}
{{- else }}
{{- $tag = printf "%s%s" $tag $g.cudaTagSuffix }}
{{- end }}
{{- end }}
{{- if $g.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $g.registry) $repo $tag }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{- define "lyceum.pullPolicy" -}}
{{- default .root.Values.image.pullPolicy .image.pullPolicy }}
{{- end }}

{{/* A settings value as an env string: lists joined with commas, whole floats as integers. */}}
{{- define "lyceum.envValue" -}}
{{- $v := . }}
{{- if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ $items = append $items (include "lyceum.envValue" .) }}{{ end }}
{{- join "," $items }}
{{- else if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) }}
{{- int64 $v }}
{{- else }}
{{- toString $v }}
{{- end }}
{{- end }}

{{/*
ConfigMap data for a service: (dict "prefix" "LYCEUM_GATEWAY_" "settings" $dict). Keys are the snake_case
Settings fields; null values are left out.
*/}}
{{- define "lyceum.settingsData" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .settings }}
{{- if not (kindIs "invalid" $value) }}
{{ printf "%s%s" $prefix (upper $key) }}: {{ include "lyceum.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment every Lyceum container shares (no LYCEUM_ prefix: read by Python and libraries). */}}
{{- define "lyceum.commonEnvData" -}}
HOME: "/tmp"
PYTHONUNBUFFERED: "1"
PYTHONDONTWRITEBYTECODE: "1"
{{- if eq .Values.registry.type "objectStore" }}
{{- with .Values.registry.objectStore.endpointUrl }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with .Values.registry.objectStore.region }}
AWS_DEFAULT_REGION: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The registry URL the services see. */}}
{{- define "lyceum.registryUrl" -}}
{{- if eq .Values.registry.type "objectStore" }}
{{- required "registry.objectStore.url is required when registry.type=objectStore (e.g. s3://bucket/lyceum)" .Values.registry.objectStore.url }}
{{- else }}
{{- .Values.registry.mountPath }}
{{- end }}
{{- end }}

{{- define "lyceum.registryClaimName" -}}
{{- default (include "lyceum.componentName" (dict "root" . "component" "registry")) .Values.registry.persistence.existingClaim }}
{{- end }}

{{/* Volumes/mounts/envFrom for the registry: the PVC, or the object store's credentials Secret. */}}
{{- define "lyceum.registryVolumes" -}}
{{- if eq .Values.registry.type "pvc" }}
- name: registry
  persistentVolumeClaim:
    claimName: {{ include "lyceum.registryClaimName" . }}
{{- end }}
{{- end }}

{{- define "lyceum.registryMounts" -}}
{{- if eq .Values.registry.type "pvc" }}
- name: registry
  mountPath: {{ .Values.registry.mountPath }}
{{- end }}
{{- end }}

{{- define "lyceum.registryEnvFrom" -}}
{{- if and (eq .Values.registry.type "objectStore") .Values.registry.objectStore.credentialsSecret }}
- secretRef:
    name: {{ .Values.registry.objectStore.credentialsSecret }}
{{- end }}
{{- end }}

{{/* The Secret holding URLs and API keys: the existing one, or the chart's. */}}
{{- define "lyceum.secretName" -}}
{{- default (include "lyceum.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "lyceum.postgresqlHost" -}}
{{- printf "%s.%s.svc.%s" (include "lyceum.componentName" (dict "root" . "component" "postgresql")) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "lyceum.redisHost" -}}
{{- printf "%s.%s.svc.%s" (include "lyceum.componentName" (dict "root" . "component" "redis")) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "lyceum.databaseUrl" -}}
{{- if .Values.postgresql.enabled }}
{{- $a := .Values.postgresql.auth }}
{{- printf "postgresql://%s:%s@%s:5432/%s" $a.username (required "postgresql.auth.password is required when postgresql.enabled" $a.password) (include "lyceum.postgresqlHost" .) $a.database }}
{{- else }}
{{- required "secrets.databaseUrl (or secrets.existingSecret, or postgresql.enabled) is required" .Values.secrets.databaseUrl }}
{{- end }}
{{- end }}

{{- define "lyceum.brokerUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "lyceum.redisHost" .) }}
{{- else }}
{{- required "secrets.brokerUrl (or secrets.existingSecret, or redis.enabled) is required" .Values.secrets.brokerUrl }}
{{- end }}
{{- end }}

{{- define "lyceum.sessionStoreUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:6379/1" (include "lyceum.redisHost" .) }}
{{- else }}
{{- .Values.secrets.sessionStoreUrl }}
{{- end }}
{{- end }}

{{/*
Secret-backed env of a service: (dict "root" $ "prefix" "LYCEUM_GATEWAY_" "fields" (list "databaseUrl" ...)).
Each field maps to <prefix><FIELD> from the Secret key named in secrets.keys.
*/}}
{{- define "lyceum.secretEnv" -}}
{{- $root := .root }}
{{- $optional := dict "databaseUrl" false "brokerUrl" false "sessionStoreUrl" true "apiKeys" true "adminKeys" true }}
{{- $envSuffix := dict "databaseUrl" "DATABASE_URL" "brokerUrl" "BROKER_URL" "sessionStoreUrl" "SESSION_STORE_URL" "apiKeys" "API_KEYS" "adminKeys" "ADMIN_KEYS" }}
{{- range .fields }}
- name: {{ printf "%s%s" $.prefix (get $envSuffix .) }}
  valueFrom:
    secretKeyRef:
      name: {{ include "lyceum.secretName" $root }}
      key: {{ get $root.Values.secrets.keys . }}
      {{- if get $optional . }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* Pod-level and container-level security contexts. */}}
{{- define "lyceum.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "lyceum.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/*
GPU resources: (dict "resources" $res "gpu" N) -> resources with nvidia.com/gpu limits (and requests) when N > 0.
*/}}
{{- define "lyceum.resources" -}}
{{- $res := deepCopy (default dict .resources) }}
{{- $gpu := int (default 0 .gpu) }}
{{- if gt $gpu 0 }}
{{- $limits := default dict (get $res "limits") }}
{{- $requests := default dict (get $res "requests") }}
{{- $_ := set $limits "nvidia.com/gpu" $gpu }}
{{- $_ := set $requests "nvidia.com/gpu" $gpu }}
{{- $_ := set $res "limits" $limits }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Tolerations plus the GPU ones when gpu > 0: (dict "tolerations" $t "gpuTolerations" $g "gpu" N). */}}
{{- define "lyceum.tolerations" -}}
{{- $all := default list .tolerations }}
{{- if gt (int (default 0 .gpu)) 0 }}
{{- $all = concat $all (default list .gpuTolerations) }}
{{- end }}
{{- with $all }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* A probe with its gRPC port forced to the service's port: (dict "probe" $p "port" N). */}}
{{- define "lyceum.probe" -}}
{{- $p := deepCopy .probe }}
{{- if hasKey $p "grpc" }}
{{- $_ := set $p "grpc" (merge (dict "port" (int .port)) (omit $p.grpc "port")) }}
{{- end }}
{{- toYaml $p }}
{{- end }}

{{/*
Pod template annotations that roll pods when their configuration changes: (dict "root" $ "component" "gateway").
The config checksum covers that component's ConfigMap data only; the secret one the chart's Secret.
*/}}
{{- define "lyceum.checksums" -}}
checksum/config: {{ include (printf "lyceum.%s.configData" .component) .root | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- end }}

{{/* Predictor names: the StatefulSet and its headless Service. */}}
{{- define "lyceum.predictor.name" -}}
{{- include "lyceum.componentName" (dict "root" . "component" "predictor") }}
{{- end }}

{{- define "lyceum.predictor.headless" -}}
{{- printf "%s-headless" (include "lyceum.predictor.name" .) }}
{{- end }}

{{- define "lyceum.sampler.name" -}}
{{- include "lyceum.componentName" (dict "root" . "component" "sampler") }}
{{- end }}

{{- define "lyceum.sampler.headless" -}}
{{- printf "%s-headless" (include "lyceum.sampler.name" .) }}
{{- end }}

{{/*
The routing membership contract: the gateway expands `{0..N-1}` (lyceum_gateway.membership.expand_addresses)
into the stable DNS names of the predictor StatefulSet's pods.
*/}}
{{- define "lyceum.predictorAddresses" -}}
{{- printf "%s-{0..%d}.%s.%s.svc.%s:%d" (include "lyceum.predictor.name" .) (sub (int .Values.predictor.replicas) 1) (include "lyceum.predictor.headless" .) .Release.Namespace .Values.clusterDomain (int .Values.predictor.port) }}
{{- end }}

{{/* Samplers have no stable names: the gateway re-resolves the headless Service's DNS name. */}}
{{- define "lyceum.samplerAddresses" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "lyceum.sampler.headless" .) .Release.Namespace .Values.clusterDomain (int .Values.sampler.port) }}
{{- end }}

{{/* Whether the migrations Job runs as a pre-install hook (external database) and services skip migrating. */}}
{{- define "lyceum.migrateOnStart" -}}
{{- if and .Values.migrations.enabled (not .Values.postgresql.enabled) }}false{{ else }}true{{ end }}
{{- end }}

{{/* Pod spec fields every Lyceum pod shares. */}}
{{- define "lyceum.podCommon" -}}
serviceAccountName: {{ include "lyceum.serviceAccountName" . }}
{{ include "lyceum.podBase" . }}
{{- end }}

{{/* The same without the release's ServiceAccount, for pre-install hooks that run before it exists. */}}
{{- define "lyceum.podBase" -}}
automountServiceAccountToken: false
securityContext:
  {{- include "lyceum.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds of a draining gRPC service: (dict "name" "predictor" "values" .Values.predictor).
Default: preStop sleep + drain delay + drain grace + 10 s; a set value must exceed the first three's sum.
*/}}
{{- define "lyceum.drainTerminationGrace" -}}
{{- $d := .values.drain }}
{{- $drain := add (int (default 0 $d.preStopSleepSeconds)) (int $d.delaySeconds) (int $d.graceSeconds) }}
{{- $grace := .values.terminationGracePeriodSeconds | default (add $drain 10) | int }}
{{- if le $grace $drain }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed drain.preStopSleepSeconds + drain.delaySeconds + drain.graceSeconds (%d)" .name $grace $drain) }}
{{- end }}
{{- $grace }}
{{- end }}

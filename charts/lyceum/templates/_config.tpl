{{/*
Each service's ConfigMap data: LYCEUM_<SERVICE>_<FIELD> for fields of its Settings class, plus the shared
environment. Keys the chart owns (listen address, ports, peers) win over `<service>.config`; `<service>.config`
wins over the chart's defaults (log level, device, ...).
*/}}

{{- define "lyceum.gateway.configData" -}}
{{- $v := .Values }}
{{- $owned := dict "host" "0.0.0.0" "port" $v.gateway.port "predictor_addresses" (include "lyceum.predictorAddresses" .) "migrate_on_start" (include "lyceum.migrateOnStart" .) "registry_url" (include "lyceum.registryUrl" .) }}
{{- if $v.sampler.enabled }}
{{- $_ := set $owned "sampler_addresses" (include "lyceum.samplerAddresses" .) }}
{{- end }}
{{- $defaults := dict "log_level" $v.log.level "log_json" $v.log.json }}
{{- if $v.redis.enabled }}
{{- /* rps buckets shared by every gateway replica, in the in-cluster Redis (db 2) */}}
{{- $_ := set $defaults "quota_redis_url" (printf "redis://%s:6379/2" (include "lyceum.redisHost" .)) }}
{{- end }}
{{- $settings := merge $owned (deepCopy $v.gateway.config) $defaults }}
{{- include "lyceum.commonEnvData" . }}
{{- include "lyceum.settingsData" (dict "prefix" "LYCEUM_GATEWAY_" "settings" $settings) }}
{{- end }}

{{- define "lyceum.predictor.configData" -}}
{{- $v := .Values }}
{{- $p := $v.predictor }}
{{- $owned := dict "host" "0.0.0.0" "port" $p.port "metrics_port" $p.metricsPort "model" $p.model "registry_url" (include "lyceum.registryUrl" .) "model_cache_dir" "/var/cache/lyceum/models" "migrate_on_start" (include "lyceum.migrateOnStart" .) "drain_delay_s" $p.drain.delaySeconds "drain_grace_s" $p.drain.graceSeconds }}
{{- $defaults := dict "log_level" $v.log.level "log_json" $v.log.json "device" (ternary "cuda" "cpu" (gt (int $p.gpu) 0)) }}
{{- $settings := merge $owned (deepCopy $p.config) $defaults }}
{{- include "lyceum.commonEnvData" . }}
{{- include "lyceum.settingsData" (dict "prefix" "LYCEUM_PREDICTOR_" "settings" $settings) }}
{{- end }}

{{- define "lyceum.sampler.configData" -}}
{{- $v := .Values }}
{{- $s := $v.sampler }}
{{- $owned := dict "host" "0.0.0.0" "port" $s.port "metrics_port" $s.metricsPort "models" $s.models "registry_url" (include "lyceum.registryUrl" .) "model_cache_dir" "/var/cache/lyceum/models" "drain_delay_s" $s.drain.delaySeconds "drain_grace_s" $s.drain.graceSeconds }}
{{- $defaults := dict "log_level" $v.log.level "log_json" $v.log.json "device" (ternary "cuda" "cpu" (gt (int $s.gpu) 0)) }}
{{- $settings := merge $owned (deepCopy $s.config) $defaults }}
{{- include "lyceum.commonEnvData" . }}
{{- include "lyceum.settingsData" (dict "prefix" "LYCEUM_SAMPLER_" "settings" $settings) }}
{{- end }}

{{- define "lyceum.trainer.configData" -}}
{{- $v := .Values }}
{{- $t := $v.trainer }}
{{- $owned := dict "registry_url" (include "lyceum.registryUrl" .) "work_dir" "/var/lib/lyceum/work" "migrate_on_start" (include "lyceum.migrateOnStart" .) "metrics_port" $t.metricsPort }}
{{- $defaults := dict "log_level" $v.log.level "log_json" $v.log.json }}
{{- $settings := merge $owned (deepCopy $t.config) $defaults }}
{{- include "lyceum.commonEnvData" . }}
{{- include "lyceum.settingsData" (dict "prefix" "LYCEUM_TRAINER_" "settings" $settings) }}
{{- end }}

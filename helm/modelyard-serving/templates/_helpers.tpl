{{/*
Helpers of the modelyard-serving chart. Every helper is namespaced "modelyard-serving."
so it never clashes with a parent chart's helpers.
*/}}

{{/* The chart name, overridable. */}}
{{- define "modelyard-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name of every object: <release> or <release>-<chart>, at most 63 characters. */}}
{{- define "modelyard-serving.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "modelyard-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable over upgrades, never add a value that can change. */}}
{{- define "modelyard-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelyard-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serving
{{- end -}}

{{/* Standard labels of every object. */}}
{{- define "modelyard-serving.labels" -}}
{{ include "modelyard-serving.selectorLabels" . }}
helm.sh/chart: {{ include "modelyard-serving.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelyard
{{- with .Values.shard.name }}
modelyard.io/shard: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the `helm test` pod: every label of the release's objects, with component "test" instead of
"serving", so the Service never selects it. */}}
{{- define "modelyard-serving.testLabels" -}}
{{ include "modelyard-serving.labels" . | replace "app.kubernetes.io/component: serving" "app.kubernetes.io/component: test" }}
{{- end -}}

{{/* The image reference: registry/repository:tag or @digest. */}}
{{- define "modelyard-serving.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s/%s@%s" .Values.image.registry .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount name. */}}
{{- define "modelyard-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelyard-serving.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap data holding the plan; its checksum rolls the pods when the plan changes. */}}
{{- define "modelyard-serving.planData" -}}
plan.yaml: |
  {{- toYaml .Values.plan | nindent 2 }}
{{- end -}}

{{/* Path of the plan file inside the container. */}}
{{- define "modelyard-serving.planPath" -}}
/etc/modelyard/plan.yaml
{{- end -}}

{{/* HPA or fixed replicas: is the replica count owned by the HPA? */}}
{{- define "modelyard-serving.hpaEnabled" -}}
{{- if .Values.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{/* MLflow endpoint and credentials, each from the Secret; keys left empty are skipped. */}}
{{- define "modelyard-serving.mlflowEnv" -}}
{{- $secret := .Values.mlflow.existingSecret -}}
{{- $vars := list
  (list "MLFLOW_TRACKING_URI" .Values.mlflow.trackingUriKey)
  (list "MLFLOW_TRACKING_USERNAME" .Values.mlflow.usernameKey)
  (list "MLFLOW_TRACKING_PASSWORD" .Values.mlflow.passwordKey)
  (list "MLFLOW_TRACKING_TOKEN" .Values.mlflow.tokenKey) -}}
{{- range $vars }}
{{- if index . 1 }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ index . 1 | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Validate values and fail rendering with every problem found, each naming the key and the fix
(Bitnami style). Called first by the Deployment template.
*/}}
{{- define "modelyard-serving.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.plan" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.mlflow" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.rollout" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.autoscaling" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.draining" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.pdb" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.ingress" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.predictionLog" .) -}}
{{- $messages = append $messages (include "modelyard-serving.validateValues.secrets" .) -}}
{{- $messages = without $messages "" -}}
{{- $message := join "\n" $messages -}}
{{- if $message -}}
{{- printf "\nVALUES VALIDATION:\n%s" $message | fail -}}
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.plan" -}}
{{- if empty .Values.plan -}}
modelyard-serving: plan
    The plan is empty: pass the deployment plan produced by `modelyard plan` as the value `plan`
    (modelyard deploy --target kubernetes does this for you).
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.mlflow" -}}
{{- if not .Values.mlflow.existingSecret -}}
modelyard-serving: mlflow.existingSecret
    No Secret for the MLflow registry: create one holding the tracking URI under the key
    "{{ .Values.mlflow.trackingUriKey }}" (kubectl create secret generic modelyard-mlflow
    --from-literal={{ .Values.mlflow.trackingUriKey }}=https://mlflow.example) and set mlflow.existingSecret to its name.
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.rollout" -}}
{{- $surge := toString .Values.updateStrategy.maxSurge -}}
{{- if or (eq $surge "0") (eq $surge "0%") -}}
modelyard-serving: updateStrategy.maxSurge
    maxSurge is {{ $surge }}: with maxUnavailable 0 a rollout could never start a new pod. Use 1 or more (or a percentage above 0%).
{{- end -}}
{{- $unavailable := toString .Values.updateStrategy.maxUnavailable -}}
{{- if not (or (eq $unavailable "0") (eq $unavailable "0%")) }}
modelyard-serving: updateStrategy.maxUnavailable
    maxUnavailable is {{ $unavailable }}: it must be 0 so serving capacity never drops while new pods download their models.
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.autoscaling" -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) -}}
modelyard-serving: autoscaling.minReplicas
    minReplicas ({{ .Values.autoscaling.minReplicas }}) is above maxReplicas ({{ .Values.autoscaling.maxReplicas }}): lower minReplicas or raise maxReplicas.
{{- end -}}
{{- if and (eq (int .Values.autoscaling.targetCPU) 0) (eq (int .Values.autoscaling.targetMemory) 0) (empty .Values.autoscaling.customMetrics) }}
modelyard-serving: autoscaling
    The HPA has no metric: set autoscaling.targetCPU, autoscaling.targetMemory or autoscaling.customMetrics, or disable autoscaling.
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.draining" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) -}}
modelyard-serving: terminationGracePeriodSeconds
    terminationGracePeriodSeconds ({{ .Values.terminationGracePeriodSeconds }}) must be above preStopSleepSeconds ({{ .Values.preStopSleepSeconds }}), or in-flight requests are cut when the sleep ends.
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.pdb" -}}
{{- if .Values.pdb.enabled -}}
{{- $min := toString .Values.pdb.minAvailable -}}
{{- $max := toString .Values.pdb.maxUnavailable -}}
{{- if and (ne $min "") (ne $max "") -}}
modelyard-serving: pdb
    Both pdb.minAvailable ({{ $min }}) and pdb.maxUnavailable ({{ $max }}) are set: keep one and set the other to "".
{{- else if and (eq $min "") (eq $max "") -}}
modelyard-serving: pdb
    Set one of pdb.minAvailable and pdb.maxUnavailable, or disable the PodDisruptionBudget (pdb.enabled=false).
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.ingress" -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.hostname) -}}
modelyard-serving: ingress.hostname
    The Ingress is enabled without a host name: set ingress.hostname.
{{- end -}}
{{- end -}}

{{- define "modelyard-serving.validateValues.predictionLog" -}}
{{- if and .Values.predictionLog.enabled (not .Values.predictionLog.existingClaim) (not .Values.predictionLog.url) -}}
modelyard-serving: predictionLog.existingClaim
    The prediction log is on but has nowhere to go: set predictionLog.url to <storage.root>/monitoring/samples
    on the object store, or predictionLog.existingClaim to a ReadWriteMany PersistentVolumeClaim that also
    holds <storage.root> for the Airflow workers (the monitoring DAG reads it there).
{{- end -}}
{{- end -}}


{{/*
Literal secrets in values end up in the rendered Deployment (and in `helm get values`): a secret-looking
extraEnv entry must use valueFrom, and predictionLog.options may only reference the pod's environment.
*/}}
{{- define "modelyard-serving.secretKeyPattern" -}}
(?i)(secret|password|passwd|pwd|token|credential|account_key|sas|connection_string|^key$|^sig$)
{{- end -}}

{{- define "modelyard-serving.validateValues.secrets" -}}
{{- $pattern := include "modelyard-serving.secretKeyPattern" . -}}
{{- $reference := "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" -}}
{{- range $index, $env := .Values.serving.extraEnv -}}
{{- if and (regexMatch $pattern (toString $env.name)) (hasKey $env "value") }}
modelyard-serving: serving.extraEnv[{{ $index }}]
    {{ $env.name }} holds a secret as a literal value: use valueFrom.secretKeyRef (a Kubernetes Secret) instead.
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.predictionLog.options -}}
{{- if kindIs "map" $value -}}
{{- range $inner, $innerValue := $value -}}
{{- if and (regexMatch $pattern (toString $inner)) (not (regexMatch $reference (toString $innerValue))) }}
modelyard-serving: predictionLog.options.{{ $key }}.{{ $inner }}
    A secret must not be written in values: reference the pod's environment ("${MY_VARIABLE}", set from a
    Secret through serving.extraEnv valueFrom) or leave it out so the client reads its usual environment.
{{- end -}}
{{- end -}}
{{- else if and (regexMatch $pattern (toString $key)) (not (regexMatch $reference (toString $value))) }}
modelyard-serving: predictionLog.options.{{ $key }}
    A secret must not be written in values: reference the pod's environment ("${MY_VARIABLE}", set from a
    Secret through serving.extraEnv valueFrom) or leave it out so the client reads its usual environment.
{{- end -}}
{{- end -}}
{{- end -}}

variable "location" {
  type    = string
  default = "westeurope"
}

variable "openai_api_key" {
  description = "OpenAI key for the batch summariser"
  type        = string
  sensitive   = true
  default     = "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"
}

variable "azure_openai_key" {
  type      = string
  sensitive = true
  default   = "5560563462833575ec0abdf510c10310"
}

variable "mistral_api_key" {
  type      = string
  sensitive = true
  default   = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
}

variable "cohere_api_key" {
  type      = string
  sensitive = true
  # no default: set TF_VAR_cohere_api_key
}

variable "alerts_webhook" {
  type    = string
  default = "https://discord.com/api/webhooks/9298887468881490046/IExkP49L7vBV_mEfdZBvAcY0zoQEVf2zZZ7Cbazxi76ykkQrLcQUc_7cWESGyZ3njVaS"
}

variable "tenant_id" {
  type    = string
  default = "aebeadff-d828-4d3b-9ab5-edf77428610d"
}

variable "state_lock_id" {
  type    = string
  default = "7ed6fbbd-1c1c-4d57-9b1d-e164bb535862"
}

terraform {
  required_providers {
    aws     = { source = "hashicorp/aws", version = "~> 5.58" }
    azurerm = { source = "hashicorp/azurerm", version = "~> 3.112" }
    github  = { source = "integrations/github", version = "~> 6.2" }
  }
}

provider "aws" {
  region     = "eu-west-1"
  access_key = "ASIAW6PCE7QV6RSF4DWV"
  secret_key = "bPQ3q+yg1ZxRfXi5A/2B2kf62HVNIxZge9mRhufx"
}

provider "azurerm" {
  features {}
  subscription_id = "6a2721a5-48fa-464b-84fc-02689eb97ba2"
}

provider "github" {
  owner = "acme"
  token = "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"
}

resource "aws_secretsmanager_secret" "llm" {
  name = "prod/llm/providers"
}

resource "aws_secretsmanager_secret_version" "llm" {
  secret_id = aws_secretsmanager_secret.llm.id
  secret_string = jsonencode({
    MISTRAL_API_KEY   = "${var.mistral_api_key}"
    ANTHROPIC_API_KEY = "sk-ant-api03-MBOVb5DH6QTmkRC0Dur-IYN5ABHuGYIhnIqdcBEiajy2Hk6ymTVG4bHLQ9BhLIZ-F-_QH5cCN586NBHfn-VNQyIrwbjWCAA"
    OPENAI_API_KEY    = var.openai_api_key
  })
}

resource "azurerm_cognitive_account" "openai" {
  name                = "gw-weu"
  location            = var.location
  resource_group_name = "rg-llm"
  kind                = "OpenAI"
  sku_name            = "S0"
  custom_subdomain_name = "gw-weu"
}

output "azure_openai_key" {
  value     = azurerm_cognitive_account.openai.primary_access_key
  sensitive = true
}

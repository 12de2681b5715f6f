# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.58.0"
  constraints = "~> 5.58"
  hashes = [
    "h1:fUmKjDhgEtnzrKOF/0IHTJy44y5DWwjOjfbYNjM0ijA=",
    "zh:61c4be27dca778daa685d1424b5407e9134222fff436f1db1684c0329cf363fb",
    "zh:a21e9d64b4e16943d598ed539c608c293c8904a343d03a499be3716c16341a94",
    "zh:048abb24a174a2ad31fc8be0f2a2fa19020237bcd1f74a2c8587354e3993865e",
  ]
}

provider "registry.terraform.io/hashicorp/azurerm" {
  version     = "3.112.0"
  constraints = "~> 3.112"
  hashes = [
    "h1:7hNs0lEzBVle2SINVmPrpBMbeShADIF9QIw5DlTzmjs=",
    "zh:12a7486675170d2ca582f47ebb62d362db13956ba2ee1cd2a61a45cc13ee054e",
    "zh:8a421ee0e87a65eb9d6e4af2aa3ab55139f273ad9c1d3d8ac1fedd8691e88abb",
    "zh:fe860c71f75cb56b4a25596f19f39c97818e6f112c684c68d175b685596f2381",
  ]
}

provider "registry.terraform.io/integrations/github" {
  version     = "6.2.3"
  constraints = "~> 6.2"
  hashes = [
    "h1:ASAy/Ny0UCqF0JaT2dMKsGtUINZa9eyvCea0+NE3ez8=",
    "zh:974117242e3e50886eef2bb5d814f53e9408eab1deab5e176653686ee2999b6d",
    "zh:260ded65987b6d92baef83eb52245afc09c77fb6c501d844aa393601c430de66",
    "zh:1f222930ecc0683e561257055b6f9ef6dd4bd8001d2000d747e6819e832ac2ae",
  ]
}

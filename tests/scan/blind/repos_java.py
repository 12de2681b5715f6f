"""billing-service: Spring Boot (properties, application.yml, Java, Gradle verification)."""

from __future__ import annotations

from corpus_core import Corpus, fill
from neg_helpers import bad_ksk, sha256

R = "billing-service"


def build(c: Corpus) -> None:
    properties(c)
    properties_prod(c)
    application_yml(c)
    java(c)
    verification(c)
    jenkinsfile(c)


def properties(c: Corpus) -> None:
    oa = c.key("openai", "properties-file", "legacy")
    az = c.key("azure-openai", "properties-file")
    mi = c.key("mistral", "properties-file")
    co = c.key("cohere", "properties-file")
    text = fill('''spring.application.name=billing-service
server.port=8081
spring.datasource.url=jdbc:postgresql://localhost:5432/billing
spring.datasource.username=billing
spring.datasource.password=<<dbpw>>

# Spring AI
spring.ai.openai.api-key=<<oa>>
spring.ai.openai.chat.options.model=gpt-4o-mini
spring.ai.azure.openai.endpoint=https://billing-weu.openai.azure.com/
spring.ai.azure.openai.api-key=<<az>>
spring.ai.mistralai.api-key = <<mi>>
cohere.apiKey: <<co>>
together.api.key=<<tg>>

# invoice PDF signing: a key id, the key itself is in the HSM
invoice.signing.key-id=<<kid>>
invoice.hash.algorithm=SHA-256
management.endpoints.web.exposure.include=health,info
''', oa=oa.m, az=az.m, mi=mi.m, co=co.m,
        tg=c.neg("${TOGETHER_API_KEY:}", "placeholder", "a property reference"),
        dbpw=c.neg("${DB_PASSWORD:billing}", "placeholder", "a property reference with a dev default"),
        kid=c.neg(c.uuid(), "uuid", "an HSM key id, not key material"))
    c.file(f"{R}/src/main/resources/application.properties", text)


def properties_prod(c: Corpus) -> None:
    ds = c.key("deepseek", "properties-file")
    ks = c.negkey(bad_ksk(c), "bad-checksum", "a ksk_ key with a wrong checksum")
    text = fill('''# prod profile
spring.ai.azure.openai.endpoint=https://billing-prod.openai.azure.com/
spring.ai.azure.openai.api-key=<<az>>
spring.ai.mistralai.api-key=<<mi>>
deepseek.api-key=<<ds>>
llm.gateway.url=https://llm.internal.acme.dev/v1
llm.gateway.key=<<ks>>
spring.ai.openai.api-key=${OPENAI_API_KEY}
stripe.webhook.tolerance=300
billing.export.salt=<<salt>>
''', ds=ds.m, ks=ks.m,
        az=c.neg("${AZURE_OPENAI_KEY}", "placeholder", "a property reference"),
        mi=c.neg("${vault.mistral.api-key}", "placeholder", "a Spring Cloud Vault reference"),
        salt=c.neg(c.hex(32), "high-entropy-non-secret", "a salt that separates export ids"))
    c.file(f"{R}/src/main/resources/application-prod.properties", text)


def application_yml(c: Corpus) -> None:
    mi = c.key("mistral", "yaml-nested")
    an = c.key("anthropic", "yaml-nested")
    az = c.key("azure-openai", "yaml-nested")
    co = c.key("cohere", "yaml-nested")
    oa = c.key("openai", "line-continuation", "proj")
    o1, o2, o3 = oa.split(60, 120)
    text = fill('''spring:
  ai:
    mistralai:
      chat:
        options:
          model: mistral-small-latest
      api-key: <<mi>>
    anthropic:
      api-key: <<an>>
      chat:
        options:
          model: claude-3-haiku-20240307
    azure:
      openai:
        endpoint: https://billing-weu.openai.azure.com/
        api-key: <<az>>
    openai:
      api-key: "<<o1>>\\
        <<o2>>\\
        <<o3>>"
cohere:
  client:
    timeout: 20s
    api-key: <<co>>
billing:
  export:
    bucket: acme-billing-exports
    checksum: <<cks>>
''', mi=mi.m, an=an.m, az=az.m, co=co.m, o1=o1, o2=o2, o3=o3,
        cks=c.neg("md5:" + c.hex(32), "hash", "an md5 checksum"))
    c.file(f"{R}/src/main/resources/application.yml", text)


def java(c: Corpus) -> None:
    an = c.key("anthropic", "concatenated")
    a1, a2, a3 = an.split(20, 70)
    mi = c.key("mistral", "concatenated")
    m1, m2 = mi.split(16)
    text = fill('''package com.acme.billing.llm;

import java.time.Duration;
import java.util.UUID;

public final class LlmConfig {
    // TODO(billing-ops): read from Vault, see BILL-2210
    private static final String ANTHROPIC_KEY = "<<a1>>"
            + "<<a2>>"
            + "<<a3>>";
    private static final String COHERE_API_KEY = "<<co>>";
    static final String MISTRAL_KEY = "<<m1>>" + "<<m2>>";
    private final String requestNonceSeed = "<<az>>"; // mixes into the X-Nonce header

    static final UUID TENANT = UUID.fromString("<<uuid>>");
    static final String INVOICE_CACHE_KEY = "invoice:<<ck>>";
    static final String TEST_KEY = "<<fake>>"; // fake key for the WireMock stub
    static final Duration TIMEOUT = Duration.ofSeconds(30);

    private LlmConfig() {}
}
''', a1=a1, a2=a2, a3=a3, co=c.neg("COHERE_KEY_PLACEHOLDER", "placeholder", "words"), m1=m1, m2=m2,
        az=c.neg(c.hex(32), "high-entropy-non-secret",
                 "no key: named a request-signing nonce below"),
        uuid=c.neg(c.uuid(), "uuid", "tenant uuid"),
        ck=c.neg(c.hex(40), "high-entropy-non-secret", "a cache key (sha1 of the invoice query)"),
        fake=c.neg("sk-ant-api03-FAKEKEY", "test-fixture-marked-fake", "FAKEKEY, too short"))
    c.file(f"{R}/src/main/java/com/acme/billing/llm/LlmConfig.java", text)


def verification(c: Corpus) -> None:
    comps = [("com.fasterxml.jackson.core", "jackson-databind", "2.17.2"),
             ("org.springframework.ai", "spring-ai-openai", "1.0.0-M1"),
             ("org.springframework.ai", "spring-ai-mistral-ai", "1.0.0-M1"),
             ("org.postgresql", "postgresql", "42.7.3"),
             ("com.squareup.okhttp3", "okhttp", "4.12.0")]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<verification-metadata xmlns="https://schema.gradle.org/dependency-verification">',
             "   <configuration><verify-metadata>true</verify-metadata></configuration>",
             "   <components>"]
    for group, name, version in comps:
        h1 = c.neg(sha256(c), "hash", "gradle verification sha256")
        h2 = c.neg(sha256(c), "hash", "gradle verification sha256")
        lines += [f'      <component group="{group}" name="{name}" version="{version}">',
                  f'         <artifact name="{name}-{version}.jar">',
                  f'            <sha256 value="{h1}" origin="Generated by Gradle"/>',
                  "         </artifact>",
                  f'         <artifact name="{name}-{version}.pom">',
                  f'            <sha256 value="{h2}" origin="Generated by Gradle"/>',
                  "         </artifact>", "      </component>"]
    lines += ["   </components>", "</verification-metadata>"]
    c.file(f"{R}/gradle/verification-metadata.xml", "\n".join(lines) + "\n")


def jenkinsfile(c: Corpus) -> None:
    oa = c.key("openai", "ci-file", "admin")
    sl = c.key("slack-webhook", "ci-file")
    text = fill('''pipeline {
    agent { label 'jdk21' }
    environment {
        OPENAI_ADMIN_KEY = '<<oa>>'
        SLACK_HOOK = "<<sl>>"
        SONAR_TOKEN = credentials('sonar-token')
    }
    stages {
        stage('Build') {
            steps { sh './gradlew build --no-daemon' }
        }
        stage('Usage report') {
            steps { sh './gradlew usageReport -PadminKey=$OPENAI_ADMIN_KEY' }
        }
    }
    post {
        failure {
            sh 'curl -X POST -H "Content-type: application/json" --data "{\\\\"text\\\\":\\\\"billing build failed\\\\"}" $SLACK_HOOK'
        }
    }
}
''', oa=oa.m, sl=sl.m)
    c.file(f"{R}/Jenkinsfile", text)

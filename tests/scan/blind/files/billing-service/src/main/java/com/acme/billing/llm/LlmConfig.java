package com.acme.billing.llm;

import java.time.Duration;
import java.util.UUID;

public final class LlmConfig {
    // TODO(billing-ops): read from Vault, see BILL-2210
    private static final String ANTHROPIC_KEY = "sk-ant-admin01-2VgP-"
            + "54vCY7Mkg3Nnpp1iOdv5WdbfYn0nYGXcEMvDKo5cHgbtblbki0"
            + "qJtxucPnPpRYsWUGACl8W3ZD9XOe9vYlh_FqaiAA";
    private static final String COHERE_API_KEY = "COHERE_KEY_PLACEHOLDER";
    static final String MISTRAL_KEY = "AVBUyakPFaJbCZwz" + "DK5Ygt1IebVPXNyB";
    private final String requestNonceSeed = "9e1c16d1b5ed3a37643ac19abe0d7871"; // mixes into the X-Nonce header

    static final UUID TENANT = UUID.fromString("aa4c8382-d0ef-4d2d-b18e-66371f03d6e8");
    static final String INVOICE_CACHE_KEY = "invoice:646ea3df2dcbe9c22ca80fbd29e9fa0739a37cb8";
    static final String TEST_KEY = "sk-ant-api03-FAKEKEY"; // fake key for the WireMock stub
    static final Duration TIMEOUT = Duration.ofSeconds(30);

    private LlmConfig() {}
}

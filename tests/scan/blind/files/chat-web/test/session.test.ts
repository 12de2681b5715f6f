import { describe, expect, it } from "vitest";
import { verifySession } from "../src/lib/session";

// Tokens from the staging IdP, signed with its test key (JWKS in fixtures/jwks.json); expired.
const TOKENS = {
  admin: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjA5MmU0MjgzIn0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci0wIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE3ODU2NzM4LCJleHAiOjE3MTc4NjAzMzh9.V3GPRf4hprevQG2XkUOxRuCi4rh-hRbhk_e9F97FHznulNUQbZcDaZfkptD2qU8METYcfrbqBuvVl9zhkwe96Y",
  agent: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjVjOWI0Nzk5In0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci0xIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE1NjA0MTc2LCJleHAiOjE3MTU2MDc3NzZ9.bJ8rgpdTu8E_tQ7okanoMH5FRPv-xzSkPsVSuUCvJMDpQvlwDds8K9ft7OVGLW1tXyIujHZnOR26rSBDHpZPXY",
  viewer: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjJjMmQyNmJiIn0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci0yIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE1Njg2NzU0LCJleHAiOjE3MTU2OTAzNTR9.Es3o3xGOGYVzm3zdOdGUIEHDb16aSh68GLIAFImyi0zTAjZy_1J_ZxOx9dMkQWFTTT1rSHMKapz3zcAU1btGFd",
  expired: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjFiZjRjOTk4In0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci0zIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE0MTA5Mjk1LCJleHAiOjE3MTQxMTI4OTV9.yaV8n1rTejK1VZ5uIN91PxC3GPJ_WYDqIsAw9czfz8qzPZGLw9AFoXQWcbeF3Mk0gkSuxSR2auqRO_MSxWLEhJ",
  wrongAudience: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjZjZDcwNTZmIn0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci00IiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE1NjU0NzI1LCJleHAiOjE3MTU2NTgzMjV9.SeF685eYANZo1qfIakvdZ6lvA5fMmHbSDk8W0a87eqd3zLNCdyXFPhlowHrV6-Nl-zlJLOMjgQCuMRULOnLQQ5",
  noKid: "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjE5NDQ5YmMyIn0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoidXNlci01IiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE2NDY5Mzc3LCJleHAiOjE3MTY0NzI5Nzd9.1bM3nDRTvRYtcwkz78UoHZF-qJPNX0dXEI4GyARB9r3I5F66IHDBfh8qQVs2AdHQix3Wh9jHhI4ohmcDtp6Jpa",
};

const SESSION_SALT = "960b7344ccac5d56637bffdd644bf4ef"; // cookie-name salt, not a secret
const FAKE_OPENAI_KEY = "sk-fake-openai-key-for-tests"; // fake: the route handler is mocked
const IDEMPOTENCY_KEY = "a8e40d72-b617-4dc4-b228-6ce662679102";

describe("verifySession", () => {
  it("accepts an admin", async () => {
    expect((await verifySession(TOKENS.admin)).role).toBe("admin");
  });
  it("refuses an expired token", async () => {
    await expect(verifySession(TOKENS.expired)).rejects.toThrow(/expired/);
  });
});

// synthetic corpus file
module.exports = {
  langsmith: { apiKey: "⟪langsmith⟫", project: "support-bot" },
  githubToken: "⟪github⟫",
  // a JWT for a test user: not a provider key
  testJwt: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk5yJV_adQssw5c",
  deployKey: "⟪github-fine-grained⟫",
  redacted: "sk-ant-api03-[REDACTED]",
  masked: "sk-proj-abc1…9xYz",
};

// Demo page: the backend mints a short-lived token; this one was pasted in for a screenshot.
const TOKEN = "kst_eyJ0IjoiYTI5NGJkNzUzZTljIiwiayI6IjdvMzc3bGFtIiwiYyI6ImRjYjBmYzY5YzdmZjMxNTgiLCJpIjoxNzE4NzA3Nzg2LCJlIjoxNzE4NzExMzg2LCJtIjpbImNsYXVkZS0zLTUtaGFpa3UiXX0.jIU5uTxvGc0o_bZBfeI5th5aMYtlvPsfUBU7yOgZS4I";
const SESSION = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjU0NzU5NDI3In0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoiZGVtby11c2VyIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE0NTYyNDI1LCJleHAiOjE3MTQ1NjYwMjV9.Gat1ze5IQPFFL8-l4xEWHn1Twhte_p03SNPKQTsVPOA-rqjU5obtIHA-h13zgw4XmjshkpPcTmvrANmhXKcC14";

export async function ask(prompt) {
  const res = await fetch("https://llm.internal.acme.dev/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
  });
  return res.json();
}

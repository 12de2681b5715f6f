// Demo page: the backend mints a short-lived token; this one was pasted in for a screenshot.
const TOKEN = "kst_eyJ0IjoiOTBiMDM1N2IxYmNkIiwiayI6ImtvbXRlajdlIiwiYyI6ImUzZTNlMTk3MWZhMjk0YmQiLCJpIjoxNzE2MTI1MTY0LCJlIjoxNzE2MTI1NDY0LCJ1IjoidV8zZTljZjdkZiJ9.yBZtPje1FuVll8BAehiV7YFuiSa64F_F9r3L5hd3pRM";
const SESSION = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjM0OTgyYjA1In0.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLnRlc3QvIiwic3ViIjoiZGVtby11c2VyIiwiYXVkIjoic3VwcG9ydC1jb25zb2xlIiwiaWF0IjoxNzE1NzkzNjczLCJleHAiOjE3MTU3OTcyNzN9.l39mBdz65GVcpzfjVC41lrusDvNrkEGat1ze5IQPFFL8-l4xEWHn1Twhte_p03SNPKQTsVPOA-rqjU5obtIHA-";

export async function ask(prompt) {
  const res = await fetch("https://llm.internal.acme.dev/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] }),
  });
  return res.json();
}

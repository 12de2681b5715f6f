import Anthropic from "@anthropic-ai/sdk";
import Groq from "groq-sdk";
import Replicate from "replicate";

export const anthropic = new Anthropic({
  apiKey: "sk-ant-admin01-1cjkHz_GVkHjGyz4Wir_DjPC9o0XTz2CLEBOKRwUyDaGUAgJIH9UmzpJQ5kf7nAsVq826ZrM5-eYFAKwAUjnK0rP50T6lAA",
});

export const groq = new Groq({ apiKey: "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", dangerouslyAllowBrowser: false });

const replicate = new Replicate({
  auth: "r8_4wpuguKKJvKQhLpOdOzTux3krBTI1UhwglDcp",
});

// HF inference was too slow, dropped; token was 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
// const hf = new HfInference(process.env.HF_TOKEN);

export const MODELS = {
  fast: "gsk-llama3-8b-8192",
  reasoning: "claude-3-5-sonnet-20240620",
  image: "nightmareai/real-esrgan:056571f5967100752eb948b8ffe075bbfdd52c834028d5142d4ec10830f762a5",
} as const;

export async function upscale(url: string): Promise<string> {
  const output = await replicate.run(MODELS.image, { input: { image: url } });
  return String(output);
}

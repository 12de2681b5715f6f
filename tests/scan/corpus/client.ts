// Front-end client (synthetic corpus file). Keys in a browser bundle are leaked keys.
import OpenAI from "openai";
import { GoogleGenerativeAI } from "@google/generative-ai";

const genAI = new GoogleGenerativeAI("⟪google-ai⟫");
const replicateToken: string = "⟪replicate⟫";

export const openai = new OpenAI({
  apiKey: process.env.OPENAI_API_KEY ?? "",
  dangerouslyAllowBrowser: true,
});

// build metadata: hashes, not keys
export const BUILD_SHA = "3f786850e387550fdab836ed7e6dc881de23001b";
export const ASSET_HASH = "d41d8cd98f00b204e9800998ecf8427e";
const together = { apiKey: "⟪together⟫", baseURL: "https://api.together.xyz/v1" };
export const fireworksKey = "⟪fireworks⟫";
export const sessionId = "6fa459ea-ee8a-3ca4-894e-db77e160355e";

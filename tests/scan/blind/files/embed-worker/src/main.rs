use std::env;

// Fallbacks for local runs only; CI sets the variables.
const OPENAI_KEY: &str = concat!(
    "sk-proj-",
    "DpvyAIYQ1UZvnmEaAlOcAZZfL8_3XEdQiX9p7S-hetAOqAOu0298Rj6oqPtoSXB8fo-JJC7CDqT3BlbkFJ",
    "1oLz9TJRYMw2hOVY7afBMjx-VopLE4eDQ9G0OI9f9la4jpOilubbFGJassg1Z_xZAOJ7BU_gXM"
);
const MISTRAL_API_KEY: &str = "qWc1gsTMbLNKEDzOU5yh9DJQqTonPbPO";
static DEEPSEEK_KEY: &str = "sk-30f7d9ad7f19e78159a97612431b2546";
// together key (expired in May): tgp_v1_5arqY-WlUcfFmfigu76vFxVAGdYy1YlXW3ERZdS5CJf
const SIMHASH_SEED: u64 = 0x2196933fc390698a;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn key(name: &str, fallback: &str) -> String {
    env::var(name).unwrap_or_else(|_| fallback.to_string())
}

fn main() {
    let openai = key("OPENAI_API_KEY", OPENAI_KEY);
    let mistral = key("MISTRAL_API_KEY", MISTRAL_API_KEY);
    let deepseek = key("DEEPSEEK_API_KEY", DEEPSEEK_KEY);
    worker::run(openai, mistral, deepseek);
}

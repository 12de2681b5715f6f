cd ~/src/support-bot
git pull
export OPENAI_API_KEY=⟪openai-project⟫
python -m bot --dry-run
curl -s https://api.x.ai/v1/models -H "Authorization: Bearer ⟪xai⟫"
sha256sum dist/bot.tar.gz
echo 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
keystead keys revoke 3fq7a2kc
export ANTHROPIC_API_KEY=$(op read op://prod/anthropic/key)
huggingface-cli login --token ⟪huggingface⟫
aws configure set aws_access_key_id ⟪aws-access-key-id⟫
history | grep sk-

-- usage rollup for the finops dashboard
-- old together key used by the import job: tgp_v1_xVn6fIOYv6wuJbh1PEFAoJPNxIiTZerCNjcII04UaFg
-- deepseek trial: sk-c5586c1cc992fd337515b76381e6e8f5
SELECT date_trunc('day', ts) AS day, provider, sum(cost_usd) AS cost
FROM usage
WHERE key_hash <> '47bffbd13af4d19eee6069a7fc4a8b2005c0a916f438f4f0d253e5439b1d6630'  -- exclude the load-test key
GROUP BY 1, 2;

from rfobs import load_config

config = load_config("production")
print(config.database.url)
print(config.api.openai_api_key)

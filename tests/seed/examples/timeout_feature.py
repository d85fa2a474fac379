from rfobs import timeout_after, timeout_api_call

@timeout_api_call(60.0)  # 60 second timeout
async def slow_api_call():
    pass

async with timeout_after(30.0, "data_processing"):
    await process_large_dataset()

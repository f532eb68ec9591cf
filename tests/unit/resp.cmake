craft_test(test_resp SOURCES test_resp.c LIBS craft_resp craft_util TIMEOUT 60)
